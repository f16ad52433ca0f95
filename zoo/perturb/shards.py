"""Sharded parameters (FSDP2 `fully_shard`, DTensor): a rank perturbs and updates its own shard in place.

FSDP2 shards each parameter along dim 0 over a 1-D device mesh, as `torch.chunk` does: rank r holds
rows [r * c, min((r + 1) * c, rows)) with c = ceil(rows / world). Its local shard is a view of the
storage that FSDP all-gathers from before each forward, so a perturbation written into the shard is
what the gathered layer computes with. z is keyed by the element's index in the whole parameter
(`ParamSlot.offset` + the index in the shard), so the sharded z is the unsharded z, bit for bit,
wherever a shard begins; a rank draws its part alone and holds no copy of z.
"""

from __future__ import annotations

import math

import torch


def is_sharded(p: torch.Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without distributed support
        return False
    return isinstance(p, DTensor)


def local_shard(p) -> tuple[torch.Tensor, int]:
    """(the rank's shard of DTensor `p` as a plain tensor that shares its storage, the flat index of the
    shard's first element in the whole parameter).

    Raises:
        ValueError: for a placement other than FSDP2's Shard(0) on a 1-D mesh, or a replicated one.
    """
    from torch.distributed.tensor import Replicate, Shard

    placements = tuple(p.placements)
    with torch.no_grad():
        local = p.to_local()
    if all(isinstance(x, Replicate) for x in placements):
        return local, 0
    if len(placements) != 1 or not isinstance(placements[0], Shard) or placements[0].dim != 0:
        raise ValueError(f"params: a DTensor placed {placements} on a {p.device_mesh.ndim}-D mesh; zoo perturbs "
                         "shards along dim 0 of a 1-D mesh (FSDP2's fully_shard) or replicated DTensors")
    rows = p.shape[0]
    world, rank = p.device_mesh.size(), p.device_mesh.get_local_rank()
    chunk = math.ceil(rows / world) if rows else 0
    first = min(rank * chunk, rows)
    if local.shape[0] != max(0, min(rows, first + chunk) - first) or not local.is_contiguous():
        raise ValueError(f"params: a shard of {tuple(local.shape)} rows on rank {rank} of {world} is not "
                         f"torch.chunk's rows of a {tuple(p.shape)} parameter")
    return local, first * (p.numel() // rows if rows else 0)


def fsdp_modules(module) -> list:
    """The FSDP2 modules in `module`'s tree (each can be resharded)."""
    if module is None:
        return []
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return []
    return [m for m in module.modules() if isinstance(m, FSDPModule)]
