"""The step contract that `zoo finetune`'s loop and `ZOTrainer` share.

A ZO step takes one closure over the step's whole batch; with gradient accumulation that closure is
the size-weighted mean of the micro-batches' losses, all at the one point the estimator has moved the
weights to, so that the step's two losses cover the effective batch. The step returns its mean loss
and records the floats its queries returned (`last_record`): what a log keeps for a bit-exact replay.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def window_closure(closures: Sequence[Callable], sizes: Sequence[int]) -> Callable:
    """One closure over a window of micro-batches: their losses' mean weighted by `sizes` (rows), in float64."""
    if len(closures) != len(sizes) or not closures:
        raise ValueError(f"window_closure: {len(closures)} closures for {len(sizes)} micro-batch sizes")
    total = float(sum(sizes))
    if len(closures) == 1:
        return closures[0]

    def closure():
        loss = 0.0
        for fn, size in zip(closures, sizes):
            loss = loss + fn().detach().double() * (size / total)
        return loss

    return closure


def zo_step(opt, closure: Callable, full_closure: Callable | None = None) -> tuple[torch.Tensor, list[float]]:
    """(the step's mean loss, its record for replay) of one step of ZO estimator `opt`."""
    with torch.no_grad():
        loss = opt.step(closure, full_closure=full_closure)
    return loss, list(opt.last_record)
