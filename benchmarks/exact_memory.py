"""Peak memory of a MeZO step against inference, by dtype and perturbation mode, on the real SmolLM2.

    python benchmarks/exact_memory.py

The cpu suite's memory measurement (zoo/bench/memory.py: one batch of 16 SST-2 examples, review
template, two steps in a fresh process after the weights are read in, peak RSS; median of 3 processes) for float32 and
bfloat16 weights: inference, mezo-sgd with the estimators' default (in place for float32, exact
for bfloat16) and, in bfloat16, mezo-sgd in place and exact with every module held whole
(`exact_block=0`). Exact mode holds one module's own parameters aside while it runs, except that a
large Linear or Embedding streams copies of row blocks (zoo/perturb/blocked.py); SmolLM2's largest
module is its tied embedding (28.3M of 134.5M parameters).

The same four bfloat16 rows also run on the gpu preset's 1B-class Llama config (random init,
benchmarks/suites/gpu.json; tied 128256 x 2048 embedding, 262.7M of 1.24B parameters) through the
cost probe (zoo/bench/cost.py: random token ids, batch 1 x 64, two steps, peak RSS): the memory a
lent GPU would measure with `torch.cuda.max_memory_allocated`, here on the CPU.
Writes benchmarks/results/exact_memory.json (docs/performance.md quotes it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import record
from zoo.bench import cost
from zoo.bench.memory import measure, median_of_runs

SPEC = {"model": "smollm2-135m", "task": "sst2", "mode": "prompt", "tuning": "full", "template": "review",
        "batch": 16, "k": 16, "seed": 0, "device": "cpu"}
# (label, dtype, method, perturbation (None: the estimator's default), extra spec)
ROWS = [("inference", "float32", "inference", None, {}), ("mezo-sgd", "float32", "mezo-sgd", None, {}),
        ("inference", "bfloat16", "inference", None, {}), ("mezo-sgd", "bfloat16", "mezo-sgd", None, {}),
        ("mezo-sgd, exact, modules held whole", "bfloat16", "mezo-sgd", "exact", {"exact_block": 0}),
        ("mezo-sgd, in place", "bfloat16", "mezo-sgd", "inplace", {})]

GPU_SUITE = Path(__file__).resolve().parent / "suites" / "gpu.json"
REPEATS = 3
LARGE = {"name": "llama-1b", "dtype": "bfloat16", "batch": 1, "seq": 64, "rounds": 1, "device": "cpu", "seed": 0}


def large_spec() -> dict:
    configs = {c["name"]: c for c in json.loads(GPU_SUITE.read_text())["cost"]["configs"]}
    return {**LARGE, "config": configs[LARGE["name"]]["config"]}


def main() -> dict:
    rows = []
    for label, dtype, method, mode, extra in ROWS:
        row = median_of_runs(measure, {**SPEC, "dtype": dtype, "perturbation": mode, **extra}, method, REPEATS)
        rows.append({"label": label, "dtype": dtype, **row})
    large, large_rows = large_spec(), []
    for label, dtype, method, mode, extra in ROWS:
        if dtype == LARGE["dtype"]:
            row = median_of_runs(cost.measure, {**large, "perturbation": mode, **extra}, method, REPEATS)
            large_rows.append({"label": label, "dtype": dtype, **row})
    return record.save("exact_memory", {"spec": SPEC, "rows": rows, "large_spec": large, "large_rows": large_rows},
                       "python benchmarks/exact_memory.py")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
