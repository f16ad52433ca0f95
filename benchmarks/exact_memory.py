"""Peak memory of a MeZO step against inference, by dtype and perturbation mode, on the real SmolLM2.

    python benchmarks/exact_memory.py

The cpu suite's memory measurement (zoo/bench/memory.py: one batch of 16 SST-2 examples, review
template, two steps in a fresh process after the weights are read in, peak RSS) for float32 and
bfloat16 weights: inference, mezo-sgd with the estimators' default (in place for float32, exact
for bfloat16) and, in bfloat16, mezo-sgd in place and exact with every module held whole
(`exact_block=0`). Exact mode holds one module's own parameters aside while it runs, except that a
large Linear or Embedding streams copies of row blocks (zoo/perturb/blocked.py); SmolLM2's largest
module is its tied embedding (28.3M of 134.5M parameters).
Writes benchmarks/results/exact_memory.json (docs/performance.md quotes it).
"""

from __future__ import annotations

import sys

import record
from zoo.bench.memory import measure

SPEC = {"model": "smollm2-135m", "task": "sst2", "mode": "prompt", "tuning": "full", "template": "review",
        "batch": 16, "k": 16, "seed": 0, "device": "cpu"}
# (label, dtype, method, perturbation (None: the estimator's default), extra spec)
ROWS = [("inference", "float32", "inference", None, {}), ("mezo-sgd", "float32", "mezo-sgd", None, {}),
        ("inference", "bfloat16", "inference", None, {}), ("mezo-sgd", "bfloat16", "mezo-sgd", None, {}),
        ("mezo-sgd, exact, modules held whole", "bfloat16", "mezo-sgd", "exact", {"exact_block": 0}),
        ("mezo-sgd, in place", "bfloat16", "mezo-sgd", "inplace", {})]


def main() -> dict:
    rows = []
    for label, dtype, method, mode, extra in ROWS:
        row = measure({**SPEC, "dtype": dtype, "perturbation": mode, **extra}, [method])[0]
        rows.append({"label": label, "dtype": dtype, **row})
    return record.save("exact_memory", {"spec": SPEC, "rows": rows}, "python benchmarks/exact_memory.py")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
