"""Training-batch forward time with batches run whole (padded) against length-sorted chunks.

    OMP_NUM_THREADS=1 python benchmarks/chunk_speed.py [--batches 6] [--tasks rte sst2 squad]

SmolLM2-135M, k=16 seed 0 (squad: 32 train-pool questions), the fine-tuning loop's own minibatches
(16 rows; squad 4 questions of up to 512 tokens, the teacher-forced loss of docs/results.md's rows).
The two ways alternate on each batch, so the machine's drift hits both; prints medians, the median
per-batch ratio, and the largest difference between the two ways' scores (squad: losses).
"""

import argparse
import statistics
import time

import torch

from zoo.finetune.build import prepare
from zoo.finetune.loop import minibatch
from zoo.models import load_causal_lm
from zoo.tasks import few_shot, get_task

TEMPLATES = {"rte": "mezo", "sst2": "review"}


def compare(name: str, scorer, score, batches: list) -> None:
    """Times `score(batch)` with `scorer` running each batch whole, then in its default chunks."""
    chunked = scorer.call_cost_tokens
    seconds = {None: [], chunked: []}
    gap = 0.0
    for batch in batches:
        out = {}
        for cost in seconds:
            scorer.call_cost_tokens = cost
            with torch.no_grad():
                start = time.perf_counter()
                out[cost] = score(batch)
                seconds[cost].append(time.perf_counter() - start)
        gap = max(gap, float((out[None] - out[chunked]).abs().max()))
    scorer.call_cost_tokens = chunked
    ratio = statistics.median(a / b for a, b in zip(seconds[None], seconds[chunked]))
    masks = [b.attention_mask for b in batches]
    padding = 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    print(f"{name}: whole {statistics.median(seconds[None]):.2f} s, chunked {statistics.median(seconds[chunked]):.2f} s "
          f"(median of {len(batches)}); whole/chunked {ratio:.2f}x; largest difference {gap:.1e}; "
          f"padding of the whole batches {padding:.0%}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--tasks", nargs="+", default=["rte", "sst2"], choices=["rte", "sst2", "squad"])
    args = ap.parse_args()
    model, tok = load_causal_lm("smollm2-135m")
    for name in args.tasks:
        if name == "squad":
            from zoo.generation import load_squad, squad_splits
            from zoo.generation.training import SquadScorer
            from zoo.tasks import data_dir

            train = squad_splits(load_squad(data_dir() / "squad" / "dev-v1.1.json"), 0, 32, 1, 1)[0]
            scorer = SquadScorer(tok, max_length=512)
            batches = [scorer.encode([train[i] for i in minibatch(len(train), 4, 0, step)])
                       for step in range(args.batches)]
            compare(name, scorer, lambda b: scorer.ce(model, b), batches)
            continue
        task = get_task(name)
        splits = few_shot(task, 16, 0)
        built = prepare(model, tok, task, "prompt", "full", template=TEMPLATES[name])
        batches = [built.scorer.encode([splits.train[i] for i in minibatch(len(splits.train), 16, 0, step)])
                   for step in range(args.batches)]
        compare(name, built.scorer, lambda b: built.scorer(built.model, b), batches)


if __name__ == "__main__":
    main()
