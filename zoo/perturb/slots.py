"""A parameter as the perturbation backend sees it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(eq=False)
class ParamSlot:
    """One trainable tensor with the stable id that seeds its noise.

    Attributes:
        uid: position of the parameter in the optimizer's param_groups (0, 1, ...).
            It, not the tensor's identity, seeds z, so a reloaded model replays
            the same directions.
        param: the tensor, perturbed in place.
        group: its param_group dict (lr, eps, weight_decay, ...).
        name: the qualified name in the module, when a module was given.
        layer: index of the repeated block (e.g. transformer layer) that holds
            it, or None for parameters outside the repeated blocks.
        owner: the optimizer's parameter, which keys its state: `param` itself, or for a
            sharded parameter (an FSDP2 / DTensor shard) the DTensor whose local shard `param` is.
        offset: the flat index, in the whole parameter, of `param`'s first element (0 unless
            sharded): z is keyed by that global index, so a shard draws its part of the unsharded z.
    """

    uid: int
    param: torch.Tensor
    group: dict
    name: str | None = None
    layer: int | None = None
    owner: torch.Tensor | None = None
    offset: int = 0

    def __post_init__(self):
        if self.owner is None:
            self.owner = self.param

    @property
    def sharded(self) -> bool:
        return self.owner is not self.param

    @property
    def numel(self) -> int:
        return self.param.numel()

    def flat(self) -> torch.Tensor:
        """A flat view of the parameter (parameters must be contiguous)."""
        return self.param.detach().view(-1)

    def __repr__(self) -> str:
        return f"ParamSlot(uid={self.uid}, name={self.name!r}, shape={tuple(self.param.shape)})"
