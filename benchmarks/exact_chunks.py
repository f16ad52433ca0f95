"""How many model calls a training forward makes, evaluating and under the exact mode's pricing.

    python benchmarks/exact_chunks.py [--batches 20]

The tokenizer of SmolLM2-135M (no forward is run), MeZO's templates, k = 16 seed 0, the fine-tuning
loop's own minibatches of 16. For each batch: its padded tokens run whole, and the number of
length-sorted chunks `length_chunks` picks at the evaluation's call cost (64 tokens) and at an exact
full-parameter step's (64 + `EXACT_SWEEP_TOKENS`; zoo/finetune/scoring.py). Writes
benchmarks/results/exact_chunks.json (docs/performance.md quotes it).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import record
from zoo.finetune.loop import minibatch
from zoo.finetune.scoring import EXACT_SWEEP_TOKENS, PromptScorer, length_chunks
from zoo.models import local_folder
from zoo.tasks import few_shot, get_task

TEMPLATES = {"sst2": "review", "rte": "mezo"}  # the paper table's


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(local_folder("smollm2-135m"))
    costs = {"evaluation": 64, "exact step": 64 + EXACT_SWEEP_TOKENS}
    out = {"batches": args.batches, "call_cost_tokens": costs, "tasks": {}}
    for name, template in TEMPLATES.items():
        task = get_task(name)
        train = few_shot(task, 16, 0).train
        scorer = PromptScorer(tok, task.template(template))
        rows = []
        for step in range(args.batches):
            enc = scorer.encode([train[i] for i in minibatch(len(train), 16, 0, step)])
            lengths = enc.attention_mask.sum(1).tolist()
            rows.append({"whole_tokens": len(lengths) * max(lengths), "tokens": sum(lengths),
                         "calls": {k: len(length_chunks(lengths, c)) for k, c in costs.items()}})
        out["tasks"][name] = {
            "template": template, "batches": rows,
            "median_whole_over_tokens": statistics.median(r["whole_tokens"] / r["tokens"] for r in rows),
            "calls": {k: sorted({r["calls"][k] for r in rows}) for k in costs}}
    return record.save("exact_chunks", out, "python benchmarks/exact_chunks.py")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
