"""Sparse MeZO's one-time thresholds: torch.quantile (a sort) against two selections.

    OMP_NUM_THREADS=1 python benchmarks/sparse_threshold_speed.py

Model: the SmolLM2-135M config with random weights (272 tensors, 134.5M
parameters). A run of sparse-mezo computes tau = quantile(|theta|, 1 - sparsity)
once per tensor, on a strided sample of up to 2^20 elements, in its first step.
The two methods alternate within each round, the figures are medians, and every
threshold must come out with the same bits. Writes
benchmarks/results/sparse_threshold_speed.json (docs/performance.md quotes it).
"""

from __future__ import annotations

import statistics
import time

import torch

import record
from zoo.perturb import MagnitudeMask
from zoo.perturb.masks import quantile_by_selection
from models import random_model, smollm2_135m_config

ROUNDS = 3


def main() -> dict:
    model = random_model(smollm2_135m_config())
    mask = MagnitudeMask(sparsity=0.75)
    q = 1.0 - mask.sparsity
    samples = [mask.sample(p.detach().reshape(-1)) for p in model.parameters()]

    def thresholds(quantile):
        t = time.perf_counter()
        taus = [quantile(s) for s in samples]
        return time.perf_counter() - t, taus

    times = {"sort": [], "selection": []}
    for _ in range(ROUNDS):
        t_sort, by_sort = thresholds(lambda s: torch.quantile(s, q).item())
        t_sel, by_selection = thresholds(lambda s: quantile_by_selection(s, q))
        if by_sort != by_selection:
            raise SystemExit("thresholds differ between torch.quantile and quantile_by_selection")
        times["sort"].append(t_sort)
        times["selection"].append(t_sel)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "tensors": len(samples), "sampled_elements": sum(s.numel() for s in samples),
        "medians_s": med, "speedup": med["sort"] / med["selection"], "identical_thresholds": True,
        "rounds": ROUNDS,
    }
    return record.save("sparse_threshold_speed", out, "OMP_NUM_THREADS=1 python benchmarks/sparse_threshold_speed.py")


if __name__ == "__main__":
    main()
