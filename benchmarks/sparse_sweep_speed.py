"""Sparse MeZO's sweeps with the mask applied inside the C kernel, against the unfused path.

    OMP_NUM_THREADS=1 python benchmarks/sparse_sweep_speed.py

Model: the SmolLM2-135M config with random weights (float32, 134.5M
parameters), batch 16 x sequence 64. One sweep is one pass over every
parameter: the first sweep of a step (mask from |theta| < tau, packed into
bits) and a later one (mask read from the bits); then whole optimizer steps
of sparse-mezo and mezo-sgd. The variants alternate within each round and the
figures are medians, so a slow spell of the shared machine hits all of them.
Writes benchmarks/results/sparse_sweep_speed.json (docs/performance.md quotes it).
"""

from __future__ import annotations

import statistics
import time

import record
import zoo
from zoo.perturb import DirectionKey, apply_
from models import random_batch, random_model, smollm2_135m_config

ROUNDS = 7


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> dict:
    cfg = smollm2_135m_config()
    model = random_model(cfg)
    batch = random_batch(cfg.vocab_size, batch=16, seq=64)
    dense = zoo.get("mezo-sgd", model, lr=1e-9, eps=1e-3)
    sparse = zoo.get("sparse-mezo", model, lr=1e-9, eps=1e-3)
    fused_masked = type(sparse.field.stream).combine_masked_

    def sweeps(opt, step):
        slots, key = opt._slots, DirectionKey(1, step)
        coefs = {s.uid: 1e-9 for s in slots}
        opt.field.begin_step(slots, base_seed=0, step=step, step_seed=step, cache_masks=True)
        first = _timed(lambda: apply_(opt.backend, opt.field, slots, [(key, coefs)], at_theta=True))
        later = _timed(lambda: apply_(opt.backend, opt.field, slots, [(key, coefs)], at_theta=False))
        opt.field.end_step()
        return first, later

    def closure():
        return model(**batch).loss

    times = {k: [] for k in ("dense_sweep", "sparse_first_sweep", "sparse_later_sweep", "sparse_first_sweep_unfused",
                             "sparse_later_sweep_unfused", "mezo_sgd_step", "sparse_mezo_step",
                             "sparse_mezo_step_unfused")}
    for r in range(ROUNDS + 1):  # round 0 warms up
        d = sweeps(dense, r)[0]
        f1, f2 = sweeps(sparse, r)
        type(sparse.field.stream).combine_masked_ = lambda *a: False
        try:
            u1, u2 = sweeps(sparse, r)
            su = _timed(lambda: sparse.step(closure))
        finally:
            type(sparse.field.stream).combine_masked_ = fused_masked
        sd, sf = _timed(lambda: dense.step(closure)), _timed(lambda: sparse.step(closure))
        if r:
            for k, v in zip(times, (d, f1, f2, u1, u2, sd, sf, su)):
                times[k].append(v)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "medians_s": med,
        "ratios": {
            "sparse_first_sweep_over_dense": med["sparse_first_sweep"] / med["dense_sweep"],
            "sparse_later_sweep_over_dense": med["sparse_later_sweep"] / med["dense_sweep"],
            "unfused_first_sweep_over_dense": med["sparse_first_sweep_unfused"] / med["dense_sweep"],
            "unfused_later_sweep_over_dense": med["sparse_later_sweep_unfused"] / med["dense_sweep"],
            "sparse_step_over_mezo_step": med["sparse_mezo_step"] / med["mezo_sgd_step"],
            "unfused_sparse_step_over_mezo_step": med["sparse_mezo_step_unfused"] / med["mezo_sgd_step"],
        },
        "rounds": ROUNDS, "backend": sparse.backend.name,
    }
    return record.save("sparse_sweep_speed", out, "OMP_NUM_THREADS=1 python benchmarks/sparse_sweep_speed.py")


if __name__ == "__main__":
    main()
