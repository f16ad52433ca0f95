"""Structured units a mask can switch off: MLP channels and attention heads of each transformer block.

A 0/1 (or fractional) mask per unit multiplies the unit's output where the block consumes it: the MLP's
intermediate activations entering `down_proj` (one channel = one row of gate/up and one column of down),
and the attention heads' outputs entering `o_proj`. Forward pre-hooks apply it, so the model's classes,
weights and forward stay as they are; a mask of ones computes exactly the unmasked model.
"""

from __future__ import annotations

import torch
from torch import nn

UNITS = ("mlp", "heads")


class UnitMasks:
    """One mask vector per block over `kind` units, applied by forward pre-hooks.

    Attributes:
        kind: "mlp" (channels of the MLP) or "heads" (attention heads).
        per_block: units in each block.
        masks: the per-block mask tensors (ones at the start); `set` writes them.
    """

    def __init__(self, blocks: nn.ModuleList, kind: str = "mlp"):
        if kind not in UNITS:
            raise ValueError(f"units: one of {', '.join(UNITS)}, got {kind!r}")
        self.kind = kind
        self.masks: list[torch.Tensor] = []
        self._handles = []
        for i, block in enumerate(blocks):
            target, size, width = self._target(block, i)
            weight = target.weight
            mask = torch.ones(size, dtype=weight.dtype, device=weight.device)
            self.masks.append(mask)
            self._handles.append(target.register_forward_pre_hook(
                lambda m, args, mask=mask, width=width: (_masked(args[0], mask, width), *args[1:])))
        self.per_block = [m.numel() for m in self.masks]

    def _target(self, block: nn.Module, i: int) -> tuple[nn.Module, int, int]:
        """(the module whose input carries the units, the number of units, the input width of one unit)."""
        if self.kind == "mlp":
            down = getattr(getattr(block, "mlp", None), "down_proj", None)
            if not isinstance(down, nn.Linear):
                raise ValueError(f"units 'mlp': block {i} ({type(block).__name__}) has no mlp.down_proj Linear")
            return down, down.in_features, 1
        attn = getattr(block, "self_attn", None)
        o_proj = getattr(attn, "o_proj", None)
        heads = getattr(getattr(attn, "config", None), "num_attention_heads", None)
        if not isinstance(o_proj, nn.Linear) or not isinstance(heads, int):
            raise ValueError(f"units 'heads': block {i} ({type(block).__name__}) has no self_attn.o_proj and head count")
        return o_proj, heads, o_proj.in_features // heads

    @property
    def total(self) -> int:
        return sum(self.per_block)

    @torch.no_grad()
    def set(self, flat: torch.Tensor) -> None:
        """Writes all masks from one vector of `total` values (block after block)."""
        if flat.numel() != self.total:
            raise ValueError(f"mask: {self.total} values expected, got {flat.numel()}")
        for mask, part in zip(self.masks, flat.split(self.per_block)):
            mask.copy_(part.to(mask.dtype))

    def remove(self) -> None:
        """Takes the hooks off: the model computes as before the masks."""
        for h in self._handles:
            h.remove()
        self._handles = []


def _masked(x: torch.Tensor, mask: torch.Tensor, width: int) -> torch.Tensor:
    return x * (mask if width == 1 else mask.repeat_interleave(width))


@torch.no_grad()
def magnitude_scores(blocks: nn.ModuleList, kind: str = "mlp") -> torch.Tensor:
    """Each unit's weight norm, block after block: the magnitude-pruning baseline keeps the largest.

    An MLP channel's score is ||gate row|| * ||up row|| * ||down column|| (the three weights it owns); a
    head's, the norm of its columns of o_proj.
    """
    scores = []
    for block in blocks:
        if kind == "mlp":
            mlp = block.mlp
            s = mlp.down_proj.weight.float().norm(dim=0) * mlp.up_proj.weight.float().norm(dim=1)
            if hasattr(mlp, "gate_proj"):
                s = s * mlp.gate_proj.weight.float().norm(dim=1)
        else:
            o = block.self_attn.o_proj.weight.float()
            heads = block.self_attn.config.num_attention_heads
            s = o.view(o.shape[0], heads, -1).norm(dim=(0, 2))
        scores.append(s)
    return torch.cat(scores)


def keep_top(scores: torch.Tensor, keep: float) -> torch.Tensor:
    """A 0/1 mask keeping round(keep * n) units with the largest scores (ties: the earlier unit)."""
    n = scores.numel()
    k = round(keep * n)
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))[:k]
    mask = torch.zeros(n)
    mask[order] = 1.0
    return mask
