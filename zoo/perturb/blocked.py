"""Exact-mode forwards of large Linear and Embedding modules, one row block of the weight at a time.

Exact mode holds a module's own parameters aside while the module runs (modes.py). For a tied
embedding that is a fifth of a small LM's weights, and it would be the mode's peak memory. But
each output column of a Linear, and each output row of an Embedding, reads one row of the weight.
So the forward at theta + c z can be assembled from a perturbed *copy* of one row block at a time:
the weight itself is never written, and the extra memory is one block. Each copy comes from
`perturbed_copy`, the chunk code of the in-place sweeps, so it holds the bits theta + c z would.

Only modules whose class keeps the stock `nn.Linear` / `nn.Embedding` forward are streamed this
way (a subclass with its own forward, an Embedding with `max_norm`, which writes its weight, or a
module whose forward was wrapped by another library keep the hooks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .keys import BLOCK_SIZE
from .slots import ParamSlot

#: Elements of a weight perturbed at once by default: 4M (8 MiB in bfloat16).
DEFAULT_BLOCK_ELEMENTS = 1 << 22


def block_rows(row_len: int, rows: int, target_elements: int) -> int | None:
    """Rows per block near `target_elements`, so that every block starts on a stream block.

    z is defined per BLOCK_SIZE elements (keys.py), so a block of r rows must start at a multiple
    of BLOCK_SIZE: r is a multiple of BLOCK_SIZE / gcd(row_len, BLOCK_SIZE). None where one such
    block would already hold the whole weight (nothing to gain).
    """
    unit = BLOCK_SIZE // math.gcd(row_len, BLOCK_SIZE)
    per = unit * max(1, target_elements // (unit * row_len))
    return per if per < rows else None


def streamable(mod: nn.Module) -> bool:
    """Whether `mod` runs the stock Linear or Embedding forward on a contiguous 2-D weight."""
    if "forward" in vars(mod):  # wrapped by another library (accelerate's hooks, ...)
        return False
    forward = type(mod).forward
    if forward is not nn.Linear.forward and forward is not nn.Embedding.forward:
        return False
    if forward is nn.Embedding.forward and mod.max_norm is not None:
        return False
    w = getattr(mod, "weight", None)
    return isinstance(w, torch.Tensor) and w.dim() == 2 and w.is_contiguous()


@dataclass
class StreamedModule:
    """A module whose trained weight is streamed in row blocks; `extra` are its other trained parameters."""

    module: nn.Module
    weight: ParamSlot
    extra: list[ParamSlot]
    rows: int

    @property
    def block_bytes(self) -> int:
        w = self.weight.param
        return self.rows * w.shape[1] * w.element_size() + sum(s.numel * s.param.element_size() for s in self.extra)


#: perturbed(slot, start, stop, out) -> elements [start, stop) of slot at the step's perturbation
#: (or its current values, where it is not perturbed now), in `out` when given.
Perturbed = Callable[[ParamSlot, int, int, "torch.Tensor | None"], torch.Tensor]


def streamed_forward(spec: StreamedModule, perturbed: Perturbed, note_held: Callable[[int], None]):
    """The forward of `spec.module` at its perturbed parameters, assembled block by block."""
    mod, wslot = spec.module, spec.weight
    rows, width = wslot.param.shape
    step = spec.rows

    def extra_param(name: str):
        p = getattr(mod, name, None)
        for s in spec.extra:
            if s.param is p:
                return perturbed(s, 0, s.numel, None).view_as(p)
        return p

    def blocks(wanted: set[int] | None = None):
        buf = torch.empty(step * width, dtype=wslot.param.dtype, device=wslot.param.device)
        note_held(spec.block_bytes)
        for r0 in range(0, rows, step):
            if wanted is not None and r0 // step not in wanted:
                continue  # no token reads this block: its z is not drawn
            r1 = min(r0 + step, rows)
            yield r0, r1, perturbed(wslot, r0 * width, r1 * width, buf).view(r1 - r0, width)

    if isinstance(mod, nn.Linear):

        def forward(input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Linear.forward's name)
            x = input
            bias = extra_param("bias")
            out = None
            for r0, r1, w in blocks():
                y = F.linear(x, w, None if bias is None else bias[r0:r1])
                if out is None:
                    out = y.new_empty(*y.shape[:-1], rows)
                out[..., r0:r1] = y
            return out

        return forward

    def embed(input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.Embedding.forward's name)
        ids = input
        # the blocks the tokens read, with out-of-range ids in one extra bin: one host sync per call
        nblocks = -(-rows // step)
        bins = torch.where((ids >= 0) & (ids < rows), ids // step, nblocks)
        seen = torch.zeros(nblocks + 1, dtype=torch.bool, device=ids.device)
        seen[bins.reshape(-1)] = True
        seen = seen.tolist()
        if seen[-1]:
            raise IndexError(f"index out of range in self: ids must lie in [0, {rows}), got "
                             f"[{int(ids.min())}, {int(ids.max())}]")
        out = wslot.param.new_empty(*ids.shape, width)
        wanted = {b for b, hit in enumerate(seen[:-1]) if hit}
        for r0, r1, w in blocks(wanted):
            sel = (ids >= r0) & (ids < r1)
            out[sel] = w[ids[sel] - r0]
        return out

    return embed
