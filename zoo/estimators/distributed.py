"""Data-parallel ZO on torch.distributed: the ranks exchange a step's losses, a few floats, nothing else.

A direction is a pure function of (seed, step, parameter, element index), so every rank that holds
the same weights and seed draws the same z with no communication. Each rank evaluates the closure on
its own shard of the batch; the value the estimator uses at each query is the mean of the ranks'
losses, all-reduced as one float64 (8 bytes a rank a query: 16 bytes for a MeZO step). Every rank then
applies the same update to the same weights, and the replicas stay bit-identical. The log of a run
holds these reduced values, so one process replays it bit for bit.

A rank whose closure raises restores its weights (the estimator's contract) and does not join the
reduction; the others wait at most `timeout` seconds for it, then raise an error that says so, with
their weights restored too.
"""

from __future__ import annotations

import datetime

import torch

MODES = ("data", "directions")


def resolve(distributed) -> "LossReducer | None":
    """The reducer for an estimator's `distributed` option.

    Args:
        distributed: None (default): data-parallel when torch.distributed is initialised with more
            than one rank, else single-process; False: single-process even under `torchrun`;
            "data": data-parallel, and an error when torch.distributed is not initialised;
            "directions": the step's directions split among the ranks, each on the whole batch.

    Raises:
        ValueError: an unknown mode, or "data" without an initialised process group.
    """
    if distributed is False:
        return None
    if distributed is not None and distributed not in MODES:
        raise ValueError(f"distributed: must be None (automatic), False, 'data' or 'directions', got {distributed!r}")
    import torch.distributed as dist

    ready = dist.is_available() and dist.is_initialized()
    if distributed is not None and not ready:
        raise ValueError(f"distributed={distributed!r} needs torch.distributed initialised (run under torchrun, or "
                         "call torch.distributed.init_process_group first)")
    if not ready or dist.get_world_size() == 1:
        return None
    return LossReducer(mode=distributed or "data")


class LossReducer:
    """Means (or gathers) floats over the ranks of the default process group, with a timeout.

    Attributes:
        mode: "data" (each rank its shard of the batch; every loss is the ranks' mean) or "directions"
            (DistZO2's perturbation parallelism: rank r evaluates the queries of the directions
            k with k mod world = r, on the whole batch, and the step's values are gathered by one
            all-reduce of a vector that holds each value at its owner and zeros elsewhere: x + 0 = x,
            so every rank gets the owners' floats exactly).
    """

    def __init__(self, timeout: float = 300.0, mode: str = "data"):
        import torch.distributed as dist

        self.dist = dist
        self.mode = mode
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        backend = dist.get_backend()
        self.device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        self.timeout = timeout
        self.bytes_sent = 0  # float64 payloads this rank put into reductions, for the cost tables

    def mean(self, values: list[float], what: str) -> list[float]:
        """The ranks' mean of each of `values` (every rank passes the same count, in the same order)."""
        return [v / self.world for v in self.sum(values, what)]

    def sum(self, values: list[float], what: str) -> list[float]:
        """The ranks' sum of each of `values`, computed in float64."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        work = self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM, async_op=True)
        try:
            work.wait(timeout=datetime.timedelta(seconds=self.timeout))
        except Exception as e:  # gloo and nccl raise their own types on a timeout or a lost peer
            raise RuntimeError(
                f"rank {self.rank} of {self.world}: no answer from the other ranks within {self.timeout:g} s while "
                f"averaging {what} (another rank failed or is stuck; {type(e).__name__}: {str(e)[:200]}); this "
                "rank's weights are restored") from None
        self.bytes_sent += t.numel() * t.element_size()
        return t.tolist()

    def check_same(self, value: int, what: str) -> None:
        """Refuses ranks that disagree on `value` (a seed: different seeds would draw different z)."""
        t = torch.tensor([value, -value], dtype=torch.float64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        if t[0].item() != value or -t[1].item() != value:
            raise ValueError(f"{what}: the ranks disagree ({value} on rank {self.rank}, from {-t[1].item():g} to "
                             f"{t[0].item():g}); every rank must draw the same directions")
