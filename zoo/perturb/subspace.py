"""Low-rank subspace directions (SubZero).

SubZero (Yu et al., "SubZero: Random Subspace Zeroth-Order Optimization for
Memory-Efficient LLM Fine-Tuning", arXiv 2410.08989) perturbs each 2-D weight
W (m x n) along

    Z' = sqrt(m n) / r * U Z V,

with U (m x r) and V (r x n) orthonormal (QR of Gaussian matrices), refreshed
every `refresh` steps, and Z an r x r Gaussian drawn afresh for every direction.
The factor makes E||Z'||_F^2 = m n, the norm of a full Gaussian direction.
Other parameters get ordinary elementwise z.

U and V are pure functions of (optimizer seed, parameter uid, refresh index),
so they are cached, never saved: a resumed run rebuilds the same ones.
"""

from __future__ import annotations

import math

import torch

from .keys import DirectionKey, mix
from .slots import ParamSlot

_BASIS_TAG = 0x5B5B


class LowRankSubspace:
    """Per-matrix low-rank direction map.

    Args:
        rank: r, the side of the per-step core Z.
        refresh: k, steps between redraws of U and V.
    """

    def __init__(self, rank: int = 16, refresh: int = 1000):
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if refresh < 1:
            raise ValueError(f"refresh must be >= 1, got {refresh}")
        self.rank = rank
        self.refresh = refresh
        self._bases: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}

    def applies(self, slot: ParamSlot) -> bool:
        return slot.param.dim() == 2 and min(slot.param.shape) > self.rank

    def begin_step(self, slots: list[ParamSlot], base_seed: int, step: int) -> None:
        epoch = step // self.refresh
        for slot in slots:
            if self.applies(slot):
                cached = self._bases.get(slot.uid)
                if cached is None or cached[0] != epoch:
                    self._bases[slot.uid] = (epoch, *self._basis(slot, base_seed, epoch))

    def _basis(self, slot: ParamSlot, base_seed: int, epoch: int):
        m, n = slot.param.shape
        gen = torch.Generator(device=slot.param.device).manual_seed(mix(base_seed, slot.uid, epoch, _BASIS_TAG))
        a = torch.randn(m, self.rank, generator=gen, device=slot.param.device)
        b = torch.randn(n, self.rank, generator=gen, device=slot.param.device)
        u = torch.linalg.qr(a).Q
        v = torch.linalg.qr(b).Q.T.contiguous()
        return u, v

    def core(self, slot: ParamSlot, key: DirectionKey, sampler) -> torch.Tensor:
        """Z V, the r x n product shared by every row of the direction."""
        gen = torch.Generator(device=slot.param.device).manual_seed(key.tagged_seed(slot.uid, 0))
        z = sampler.fill_(torch.empty(self.rank, self.rank, device=slot.param.device), gen)
        return z @ self._bases[slot.uid][2]

    def fill_(self, out: torch.Tensor, slot: ParamSlot, start: int, core: torch.Tensor) -> torch.Tensor:
        """Writes elements [start, start + len(out)) of the flattened U Z V, scaled."""
        m, n = slot.param.shape
        u = self._bases[slot.uid][1]
        stop = start + out.numel()
        r0, r1 = start // n, (stop - 1) // n + 1
        rows = (u[r0:r1] @ core).view(-1)
        out.copy_(rows[start - r0 * n : stop - r0 * n])
        return out.mul_(math.sqrt(m * n) / self.rank)

    def extra_state_numel(self, slots: list[ParamSlot]) -> int:
        return sum(sum(slot.param.shape) * self.rank for slot in slots if self.applies(slot))
