"""A head-only MeZO step on cached encoder features against the same step through the frozen encoder.

    OMP_NUM_THREADS=1 python benchmarks/head_cache_speed.py

Model: the real all-MiniLM-L6-v2 with a zero-initialised linear head (tuning "head"), one k = 16
training batch of 16 (seed 0) of SST-2 and of RTE. Each round takes one `mezo-sgd` step with the
plain `HeadScorer` (the encoder runs in both forwards) and one with `CachedHeadScorer` (the encoder
ran once per example, before the timed steps), in alternating order; figures are medians. The two
estimators share a seed and start from equal heads, so their losses show that both score alike.
Writes benchmarks/results/head_cache_speed.json.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

import record
from zoo import estimators, tasks
from zoo.finetune.build import load
from zoo.finetune.scoring import HeadScorer

ROUNDS = 9


def main() -> dict:
    rows = []
    for task_name in ("sst2", "rte"):
        task = tasks.get_task(task_name)
        built = load("minilm-l6", task, "head", "head")
        enc = built.scorer.encode(tasks.few_shot(task, 16, 0).train[:16])
        head = built.model.head
        start = {k: v.clone() for k, v in head.state_dict().items()}
        scorers = {"plain": HeadScorer(built.tokenizer, built.scorer.max_length), "cached": built.scorer}
        with torch.no_grad():
            built.scorer(built.model, enc)  # fills the cache: once per example, as a run's first step does
        times, losses = {k: [] for k in scorers}, {k: [] for k in scorers}
        opts = {name: estimators.get("mezo-sgd", list(head.parameters()), lr=0.1, eps=1e-3, seed=0)
                for name in scorers}
        states = {name: {k: v.clone() for k, v in start.items()} for name in scorers}
        for r in range(ROUNDS):
            for name in (list(scorers) if r % 2 == 0 else list(scorers)[::-1]):
                head.load_state_dict(states[name])
                scorer = scorers[name]

                def closure():
                    return torch.nn.functional.cross_entropy(scorer(built.model, enc), enc.labels)

                t = time.perf_counter()
                with torch.no_grad():
                    loss = opts[name].step(closure)
                times[name].append(time.perf_counter() - t)
                losses[name].append(float(loss))
                states[name] = {k: v.clone() for k, v in head.state_dict().items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"task": task_name, "rows": enc.input_ids.shape[0], "padded_length": enc.input_ids.shape[1],
                     "median_step_s": med, "speedup": med["plain"] / med["cached"],
                     "max_loss_difference": max(abs(a - b) for a, b in zip(losses["plain"], losses["cached"]))})
        print(rows[-1], file=sys.stderr)
    return record.save("head_cache_speed", {"rounds": ROUNDS, "rows": rows},
                       "OMP_NUM_THREADS=1 python benchmarks/head_cache_speed.py")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
