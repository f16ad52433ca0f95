"""Forward speed of tuning "blocks" with the activation cache against the whole model's forward.

    python benchmarks/activation_cache_speed.py --blocks 2 --batches 4 --repeats 7

SmolLM2-135M-Instruct (30 blocks) in prompt mode on SST-2 training batches of 16 (the template "mezo",
as `zoo finetune --tuning blocks` scores them). For each batch, a forward through the cached path
(the top K blocks, the norm and the LM head on the cached activations) and one through the whole
model alternate, `repeats` times, after the cache has been filled; the ratio of their medians is the
speed-up of every training forward. The one-time cost of filling the cache (each example alone through
the lower blocks) is reported beside it, and the largest score difference between the two paths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from zoo.finetune.build import load
    from zoo.tasks import get_task
    from zoo.provenance import machine

    task = get_task("sst2")
    train = task.examples("train")[: args.batches * args.batch_size]
    cached = load("smollm2-135m", task, "prompt", "blocks", blocks=args.blocks)
    full_scorer = type(cached.scorer)(cached.tokenizer, cached.scorer.template, cached.scorer.max_length,
                                      blocks=args.blocks, enabled=False)
    model = cached.model
    batches = [cached.scorer.encode(train[i * args.batch_size:(i + 1) * args.batch_size]) for i in range(args.batches)]
    with torch.no_grad():
        t0 = time.perf_counter()
        for enc in batches:
            cached.scorer(model, enc)
        fill = time.perf_counter() - t0
        times = {"cached": [], "full": []}
        worst = 0.0
        for _ in range(args.repeats):
            for enc in batches:
                for name, scorer in (("cached", cached.scorer), ("full", full_scorer)):
                    t = time.perf_counter()
                    s = scorer(model, enc)
                    times[name].append(time.perf_counter() - t)
                    if name == "cached":
                        c = s
                worst = max(worst, float((c - s).abs().max()))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"model": "smollm2-135m", "task": "sst2", "blocks": args.blocks, "batch_size": args.batch_size,
           "tokens_per_batch": [int(e.attention_mask.sum()) for e in batches],
           "median_forward_s": med, "speedup": med["full"] / med["cached"],
           "cache_fill_s": fill, "cached_rows": cached.scorer.computed_rows,
           "cached_mib": cached.scorer.cached_bytes() / 2**20, "max_score_difference": worst,
           "threads": torch.get_num_threads(), "measured": {**machine(), "date": time.strftime("%Y-%m-%d")},
           "command": "python benchmarks/activation_cache_speed.py " + " ".join(
               f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json" and v is not None)}
    print(json.dumps(out, indent=1))
    if args.json:
        from zoo.files import write_json

        write_json(args.json, out, indent=1)


if __name__ == "__main__":
    main()
