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


_LOZO_TAG = 0x1020


class LowRankProduct:
    """LOZO's low-rank directions (Chen et al., "Enhancing Zeroth-Order Fine-Tuning for
    Language Models with Low-Rank Structures", ICLR 2025, arXiv 2410.07698).

    Each 2-D weight W (m x n) is perturbed along

        Z = U V^T,   U ~ N(0, 1)^{m x r} drawn afresh for every direction,
                     V ~ N(0, 1)^{n x r} redrawn every `interval` steps,

    with no normalising factor (as LOZO; E Z_ij^2 = r). Other parameters get ordinary z. V is a
    pure function of (optimizer seed, parameter uid, interval index) and U of the direction's key,
    so neither is saved: a resumed run rebuilds both.

    Args:
        rank: r.
        interval: steps between redraws of V (LOZO's `step_interval`).
    """

    def __init__(self, rank: int = 1, interval: int = 100):
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an integer >= 1, got {interval!r}")
        self.rank = rank
        self.interval = interval
        self._v: dict[int, tuple[int, torch.Tensor]] = {}

    def applies(self, slot: ParamSlot) -> bool:
        return slot.param.dim() == 2 and min(slot.param.shape) > self.rank

    def begin_step(self, slots: list[ParamSlot], base_seed: int, step: int) -> None:
        epoch = step // self.interval
        for slot in slots:
            if self.applies(slot):
                cached = self._v.get(slot.uid)
                if cached is None or cached[0] != epoch:
                    gen = torch.Generator(device=slot.param.device).manual_seed(
                        mix(base_seed, slot.uid, epoch, _LOZO_TAG))
                    v = torch.randn(slot.param.shape[1], self.rank, generator=gen, device=slot.param.device)
                    self._v[slot.uid] = (epoch, v.T.contiguous())

    def core(self, slot: ParamSlot, key: DirectionKey, sampler) -> torch.Tensor:
        """U, the m x r factor of this direction."""
        gen = torch.Generator(device=slot.param.device).manual_seed(key.tagged_seed(slot.uid, 1))
        return sampler.fill_(torch.empty(slot.param.shape[0], self.rank, device=slot.param.device), gen)

    def fill_(self, out: torch.Tensor, slot: ParamSlot, start: int, core: torch.Tensor) -> torch.Tensor:
        """Writes elements [start, start + len(out)) of the flattened U V^T."""
        n = slot.param.shape[1]
        stop = start + out.numel()
        r0, r1 = start // n, (stop - 1) // n + 1
        rows = (core[r0:r1] @ self._v[slot.uid][1]).view(-1)
        return out.copy_(rows[start - r0 * n : stop - r0 * n])

    def extra_state_numel(self, slots: list[ParamSlot]) -> int:
        return sum(slot.param.shape[1] * self.rank for slot in slots if self.applies(slot))
