"""Sweeps: one pass over the parameters that regenerates z and writes them.

Every in-place change a ZO estimator makes to the weights is

    p <- decay * p + sum_k c_k z_k,

computed in float32 (float64 for float64 parameters) and rounded once into the
parameter's dtype. A perturbation is one term with decay 1; MeZO's restore
fused with its SGD update is one term with a merged coefficient. The update
rules that need more than a linear combination (Adam) use `direction_chunk`
directly.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .backend import TorchBackend, Workspace
from .field import DirectionField
from .keys import BLOCK_SIZE, DirectionKey
from .slots import ParamSlot

#: One term of a linear combination: a direction and its coefficient per parameter uid.
Term = tuple[DirectionKey, dict[int, float]]


def direction_chunk(
    field: DirectionField,
    slot: ParamSlot,
    key: DirectionKey,
    start: int,
    stop: int,
    ws: Workspace,
    *,
    at_theta: bool,
    buffer: str = "z",
    normalize: bool = True,
    precondition: bool = True,
) -> torch.Tensor:
    """z of `slot` on [start, stop) in a reusable float32 workspace buffer.

    precondition=False gives the raw direction where the field scales it by stored state (HiZOO).
    """
    device = slot.param.device
    out = ws.buffer(buffer, stop - start, device)
    theta = slot.flat()[start:stop] if field.magnitude is not None else None
    return field.fill_(out, slot, key, start, ws, theta=theta, at_theta=at_theta, normalize=normalize,
                       precondition=precondition)


def _compute_dtype(param: torch.Tensor) -> torch.dtype:
    return torch.float64 if param.dtype == torch.float64 else torch.float32


def combine_chunk_(
    field: DirectionField,
    slot: ParamSlot,
    p: torch.Tensor,
    start: int,
    live: Sequence[tuple[DirectionKey, float]],
    decay: float,
    ws: Workspace,
    *,
    at_theta: bool,
) -> None:
    """p <- decay * p + sum_k c_k z_k, where p holds elements [start, start + len(p)) of `slot`.

    p is usually a view of the parameter; exact mode passes a copy of it, which then holds
    the very bits this sweep would have written into the parameter.
    """
    if live and field.fused_combine_(p, decay, live, slot, start, at_theta):
        return
    stop = start + p.numel()
    if decay == 1.0 and len(live) == 1:
        # add_ of a float32 z into a low-precision p computes in float32 and rounds once.
        key, c = live[0]
        p.add_(direction_chunk(field, slot, key, start, stop, ws, at_theta=at_theta), alpha=c)
        return
    dtype = _compute_dtype(slot.param)
    acc = ws.buffer("acc", stop - start, p.device, dtype).zero_()
    for key, c in live:
        acc.add_(direction_chunk(field, slot, key, start, stop, ws, at_theta=at_theta), alpha=c)
    if p.dtype == dtype:
        if decay != 1.0:
            p.mul_(decay)
        p.add_(acc)
    else:
        acc.add_(p, alpha=decay)
        p.copy_(acc)


def apply_(
    backend: TorchBackend,
    field: DirectionField,
    slots: Sequence[ParamSlot],
    terms: Sequence[Term],
    *,
    at_theta: bool,
    decay: dict[int, float] | None = None,
) -> None:
    """p <- decay[uid] * p + sum_k c_k[uid] z_k for every slot, in one write per element."""

    def fn(slot: ParamSlot, start: int, stop: int, ws: Workspace) -> None:
        live = [(key, coefs[slot.uid]) for key, coefs in terms if coefs.get(slot.uid, 0.0) != 0.0]
        d = 1.0 if decay is None else decay.get(slot.uid, 1.0)
        if not live and d == 1.0:
            return
        combine_chunk_(field, slot, slot.flat()[start:stop], start, live, d, ws, at_theta=at_theta)

    backend.map(slots, fn)


def perturbed_copy(
    backend: TorchBackend,
    field: DirectionField,
    slot: ParamSlot,
    start: int,
    stop: int,
    key: DirectionKey,
    coef: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Elements [start, stop) of `slot` at theta + coef * z(key), as a new flat tensor (or in `out`).

    The parameter is not written. The values are bit for bit those `apply_` would write in
    place, since the same chunk code computes them. `start` is a multiple of BLOCK_SIZE.
    """
    return perturbed_combination(backend, field, slot, start, stop, [(key, coef)], out)


def perturbed_combination(
    backend: TorchBackend,
    field: DirectionField,
    slot: ParamSlot,
    start: int,
    stop: int,
    live: Sequence[tuple[DirectionKey, float]],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Elements [start, stop) of `slot` at theta + sum_k c_k z_k, as a new flat tensor (or in `out`).

    `perturbed_copy` for an offset of several terms (a query point such as an SVRG anchor or a
    candidate after the update); the same chunk code as `apply_`, so the same bits.
    """
    src = slot.flat()[start:stop]
    out = torch.empty_like(src) if out is None else out[: stop - start]
    out.copy_(src)
    live = [(key, c) for key, c in live if c != 0.0]
    if live:
        def fn(s: ParamSlot, a: int, b: int, ws: Workspace) -> None:
            combine_chunk_(field, s, out[a - start : b - start], a, live, 1.0, ws, at_theta=True)

        backend.run(backend.ranges(slot, start, stop), fn)
    return out


def measure_sphere_scale(
    backend: TorchBackend, field: DirectionField, slots: Sequence[ParamSlot], key: DirectionKey, *, at_theta: bool
) -> float:
    """sqrt(d)/||g|| for the raw direction g of `key`, summed per stream block.

    Per-block float64 sums combined with math.fsum make the result independent
    of the chunk size and of thread scheduling.
    """

    def fn(slot, start, stop, ws):
        g = direction_chunk(field, slot, key, start, stop, ws, at_theta=at_theta, normalize=False)
        sums = [g[i : i + BLOCK_SIZE].double().square().sum().item() for i in range(0, g.numel(), BLOCK_SIZE)]
        return math.fsum(sums), int(torch.count_nonzero(g))

    parts = backend.map(slots, fn)
    return field.sphere_scale(math.fsum(s for s, _ in parts), sum(c for _, c in parts))
