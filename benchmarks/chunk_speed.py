"""Training-batch forward time with batches run whole (padded) against length-sorted chunks.

    OMP_NUM_THREADS=1 python benchmarks/chunk_speed.py [--batches 6]

SmolLM2-135M, MeZO's templates, k=16 seed 0, the fine-tuning loop's own minibatches of 16.
The two ways alternate on each batch, so the machine's drift hits both; prints medians,
the median per-batch ratio, and the largest score difference between the two ways.
"""

import argparse
import statistics
import time

import torch

from zoo.finetune.build import prepare
from zoo.finetune.loop import minibatch
from zoo.models import load_causal_lm
from zoo.tasks import few_shot, get_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=6)
    args = ap.parse_args()
    model, tok = load_causal_lm("smollm2-135m")
    for name, template in (("rte", "mezo"), ("sst2", "review")):
        task = get_task(name)
        splits = few_shot(task, 16, 0)
        built = prepare(model, tok, task, "prompt", "full", template=template)
        chunked = built.scorer.call_cost_tokens  # the scorer's default
        seconds = {None: [], chunked: []}
        gap = 0.0
        for step in range(args.batches):
            enc = built.scorer.encode([splits.train[i] for i in minibatch(len(splits.train), 16, 0, step)])
            scores = {}
            for cost in seconds:
                built.scorer.call_cost_tokens = cost
                with torch.no_grad():
                    start = time.perf_counter()
                    scores[cost] = built.scorer(built.model, enc)
                    seconds[cost].append(time.perf_counter() - start)
            gap = max(gap, float((scores[None] - scores[chunked]).abs().max()))
        ratio = statistics.median(a / b for a, b in zip(seconds[None], seconds[chunked]))
        print(f"{name}: whole {statistics.median(seconds[None]):.2f} s, chunked {statistics.median(seconds[chunked]):.2f} s "
              f"(median of {args.batches}); whole/chunked {ratio:.2f}x; largest score difference {gap:.1e}", flush=True)


if __name__ == "__main__":
    main()
