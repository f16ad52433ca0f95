"""The direction field: sampler + masks + subspace, evaluated block by block.

`DirectionField.fill_` is the only place that decides the value of z for an
element. Everything else (perturb sweeps, fused updates, the float64 reference,
theory probes) asks it, so every consumer sees the very same direction.
"""

from __future__ import annotations

import math

import torch

from .backend import Workspace
from .keys import BLOCK_SIZE, DirectionKey
from .masks import LayerSubset, MagnitudeMask
from .samplers import Sampler, make_sampler
from .slots import ParamSlot
from .streams import GeneratorStream
from .subspace import LowRankSubspace


class DirectionField:
    """Maps (key, parameter, element range) to the values of z.

    Args:
        sampler: the distribution of z (`gaussian`, `rademacher`, `sphere`).
        layers: optional LayerSubset (parameter-level mask, LeZO).
        magnitude: optional MagnitudeMask (element-level mask, Sparse MeZO).
        subspace: optional LowRankSubspace (SubZero directions for matrices), or
            another map with its interface (LOZO's LowRankProduct).
        preconditioner: optional elementwise scale read from stored state
            (`scale_(out, slot, start)`; HiZOO's z / sqrt(H)).
        stream: where the raw draws come from (the backend's `stream`; default
            torch's per-block generators).
    """

    def __init__(
        self,
        sampler: "str | Sampler" = "gaussian",
        *,
        layers: LayerSubset | None = None,
        magnitude: MagnitudeMask | None = None,
        subspace: LowRankSubspace | None = None,
        preconditioner=None,
        stream=None,
    ):
        self.sampler = make_sampler(sampler)
        self.stream = stream if stream is not None else GeneratorStream()
        self.layers = layers
        self.magnitude = magnitude
        self.subspace = subspace
        self.preconditioner = preconditioner
        self._scales: dict[DirectionKey, float] = {}

    # -- per-step configuration -------------------------------------------------
    def begin_step(self, slots: list[ParamSlot], *, base_seed: int, step: int, step_seed: int, cache_masks: bool):
        """Fixes the step's layer subset, subspace bases and mask thresholds."""
        self._scales = {}
        if self.layers is not None:
            self.layers.begin_step(slots, step_seed)
        active = self.active_slots(slots)
        if self.subspace is not None:
            self.subspace.begin_step(active, base_seed, step)
        if self.magnitude is not None:
            self.magnitude.begin_step(active, cache_masks)

    def end_step(self) -> None:
        self._scales = {}
        if self.magnitude is not None:
            self.magnitude.end_step()

    def active_slots(self, slots: list[ParamSlot]) -> list[ParamSlot]:
        if self.layers is None:
            return list(slots)
        return [s for s in slots if self.layers.active(s)]

    @property
    def needs_norm(self) -> bool:
        return self.sampler.normalized

    def set_scale(self, key: DirectionKey, scale: float) -> None:
        self._scales[key] = scale

    def has_scale(self, key: DirectionKey) -> bool:
        return key in self._scales

    # -- values -----------------------------------------------------------------
    def fill_(
        self,
        out: torch.Tensor,
        slot: ParamSlot,
        key: DirectionKey,
        start: int,
        ws,
        theta: torch.Tensor | None = None,
        at_theta: bool = True,
        normalize: bool = True,
        precondition: bool = True,
    ) -> torch.Tensor:
        """Writes z on elements [start, start + len(out)) of `slot` into `out`.

        Args:
            out: float32 buffer on the parameter's device.
            start: first element; a multiple of BLOCK_SIZE.
            ws: the calling worker's Workspace (private generators and buffers).
            theta: the parameter's current values on the range (needed by masks).
            at_theta: whether the weights are unperturbed right now.
            normalize: apply the sphere normalisation (False when measuring it).
            precondition: apply the preconditioner, if any (False: the raw z).
        """
        if start % BLOCK_SIZE:
            raise ValueError(f"start must be a multiple of BLOCK_SIZE={BLOCK_SIZE}, got {start}")
        use_subspace = self.subspace is not None and self.subspace.applies(slot)
        core = self.subspace.core(slot, key, self.sampler) if use_subspace else None
        if use_subspace:
            for offset in range(0, out.numel(), BLOCK_SIZE):
                self.subspace.fill_(out[offset : offset + BLOCK_SIZE], slot, start + offset, core)
        elif slot.offset % BLOCK_SIZE:  # a shard that begins inside a noise block
            begin = slot.offset + start
            pad = begin % BLOCK_SIZE
            whole = ws.buffer("shard", pad + out.numel(), out.device)
            self.stream.fill_(whole, self.sampler, key, slot.uid, begin - pad, ws)
            out.copy_(whole[pad:])
        else:
            self.stream.fill_(out, self.sampler, key, slot.uid, slot.offset + start, ws)
        if self.magnitude is not None:
            if theta is None:
                raise ValueError("a magnitude mask needs the parameter values")
            out.mul_(self.magnitude.mask(slot, start, theta, at_theta))
        if normalize and self.sampler.normalized:
            out.mul_(self._scales[key])
        if precondition and self.preconditioner is not None:
            self.preconditioner.scale_(out, slot, start)
        return out

    def materialize(self, slot: ParamSlot, key: DirectionKey, at_theta: bool = True,
                    precondition: bool = True) -> torch.Tensor:
        """The whole z of one parameter as a new float32 tensor shaped like it.

        For tests, references and analysis only: estimators never call it.
        """
        out = torch.zeros(slot.numel, dtype=torch.float32, device=slot.param.device)
        if self.layers is not None and not self.layers.active(slot):
            return out.view_as(slot.param)
        self.fill_(out, slot, key, 0, Workspace(), theta=slot.flat(), at_theta=at_theta, precondition=precondition)
        return out.view_as(slot.param)

    def fused_combine_(
        self, p: torch.Tensor, decay: float, terms, slot: ParamSlot, start: int, at_theta: bool = True
    ) -> bool:
        """p <- decay p + sum c_k z_k in the stream's fused kernel, z drawn in registers.

        A magnitude mask is applied inside the kernel (one direction, no decay:
        MeZO's sweeps); a subspace is not. Returns False (and changes nothing)
        where the stream has no fused kernel for this case.
        """
        if self.subspace is not None and self.subspace.applies(slot):
            return False
        if self.preconditioner is not None:
            return False
        if self.sampler.normalized:
            terms = [(key, c * self._scales[key]) for key, c in terms]
        if slot.offset % BLOCK_SIZE:
            return False  # the kernels start on a block boundary; fill_ serves a shard that does not
        start += slot.offset
        if self.magnitude is None:
            return self.stream.combine_(p, decay, terms, self.sampler, slot.uid, start)
        if decay != 1.0 or len(terms) != 1:
            return False
        (key, c), = terms
        tau, bits, mode = self.magnitude.kernel_args(slot, at_theta)
        return self.stream.combine_masked_(p, key, c, self.sampler, slot.uid, start, tau, bits, mode)

    @staticmethod
    def sphere_scale(sum_squares: float, count: int) -> float:
        """sqrt(d) / ||g||: the factor that puts g on the sphere of radius sqrt(d)."""
        return math.sqrt(count / sum_squares) if sum_squares > 0 else 0.0
