"""float32 against bfloat16 weights on this CPU: step time, whether a MeZO step still moves the weights, zero-shot accuracy.

    OMP_NUM_THREADS=1 python benchmarks/dtype_compare.py

Model: the real SmolLM2-135M-Instruct (`zoo.models`), SST-2 with the review template, one
k = 16 training batch of 16 (seed 0). For each tuning (full, LoRA) the two dtypes alternate
within each round, with what `zoo finetune --dtype` runs: mezo-sgd, `inplace` in float32 and
`exact` in bfloat16, at the paper table's learning rates (full 3e-5 / eps 1e-3, LoRA 1e-3 / eps 1e-2).

"moved" is the fraction of trained elements whose bits changed in a step: a bfloat16 weight
near 0.05 has a spacing of 2^-12 (about 2.4e-4), so an update lr * g * z of about 3e-5 rounds
back to the same number for most elements. Zero-shot accuracy is over all 872 SST-2 dev
sentences. Writes benchmarks/results/dtype_compare.json (docs/performance.md quotes it).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

import record
from zoo import estimators, tasks
from zoo.finetune.build import load
from zoo.finetune.evaluate import evaluate
from zoo.finetune.objectives import get_objective
from zoo.placement import dtype_of

ROUNDS = 4
SETTINGS = {"full": {"lr": 3e-5, "eps": 1e-3}, "lora": {"lr": 1e-3, "eps": 1e-2}}
PERTURBATION = {"float32": "inplace", "bfloat16": "exact"}  # what `zoo finetune --dtype` defaults to


def main() -> dict:
    task = tasks.get_task("sst2")
    batch = tasks.few_shot(task, 16, 0).train[:16]
    ce = get_objective("ce")
    out = {"steps": {}, "zero_shot": {}}
    for tuning, hp in SETTINGS.items():
        runs = {}
        for name, perturbation in PERTURBATION.items():
            built = load("smollm2-135m", task, "prompt", tuning, template="review", dtype=dtype_of(name))
            params = [p for p in built.model.parameters() if p.requires_grad]
            opt = estimators.get("mezo-sgd", params, module=built.model, seed=0, perturbation=perturbation, **hp)
            runs[name] = (built, params, opt, built.scorer.encode(batch))
        times = {name: [] for name in PERTURBATION}
        moved = {name: [] for name in PERTURBATION}
        for _ in range(ROUNDS):
            for name, (built, params, opt, enc) in runs.items():
                before = [p.detach().clone() for p in params]
                t = time.perf_counter()
                with torch.no_grad():
                    opt.step(lambda: ce(built.scorer(built.model, enc), enc.labels))
                times[name].append(time.perf_counter() - t)
                changed = sum(int((a != b).sum()) for a, b in zip(before, params))
                moved[name].append(changed / sum(p.numel() for p in params))
        out["steps"][tuning] = {
            name: {"median_step_s": statistics.median(times[name]), "step_s": times[name],
                   "moved_fraction_median": statistics.median(moved[name]), "moved_fraction": moved[name],
                   "trained_dtypes": sorted({str(p.dtype) for p in runs[name][1]}),
                   "perturbation": PERTURBATION[name], **hp}
            for name in PERTURBATION}
        out["steps"][tuning]["time_ratio_float32_over_bfloat16"] = (
            out["steps"][tuning]["float32"]["median_step_s"] / out["steps"][tuning]["bfloat16"]["median_step_s"])
        del runs
    dev = task.examples(task.eval_split)
    for name in PERTURBATION:
        built = load("smollm2-135m", task, "prompt", "full", template="review", dtype=dtype_of(name))
        t = time.perf_counter()
        m = evaluate(built.model, built.scorer, dev)
        out["zero_shot"][name] = {"accuracy": m["accuracy"], "loss": m["loss"], "examples": m["examples"],
                                  "seconds": time.perf_counter() - t}
    return record.save("dtype_compare", out, "OMP_NUM_THREADS=1 python benchmarks/dtype_compare.py")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
