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
    """

    uid: int
    param: torch.Tensor
    group: dict
    name: str | None = None
    layer: int | None = None

    @property
    def numel(self) -> int:
        return self.param.numel()

    def flat(self) -> torch.Tensor:
        """A flat view of the parameter (parameters must be contiguous)."""
        return self.param.detach().view(-1)

    def __repr__(self) -> str:
        return f"ParamSlot(uid={self.uid}, name={self.name!r}, shape={tuple(self.param.shape)})"
