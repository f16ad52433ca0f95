"""Wall time of an n-SPSA step with every point in one batched forward (P-RGE) against one forward per point.

    OMP_NUM_THREADS=2 python benchmarks/batched_speed.py --json docs/batched_speed.json

P-RGE (Gao et al., arXiv 2409.15520) evaluates the 2n points of an n-SPSA step in one forward over the
batch replicated 2n times, each replica with its own copy of the small trained tensors. zoo's
`perturbation="batched"` does it with torch.func.vmap (zoo/perturb/batched.py). For each setting
(SST-2 training batches: all-MiniLM-L6-v2's linear head on cached features, LoRA r=8 on its query and
value projections; SmolLM2-135M's 5-token prefix in prompt mode) and each n, the two modes take alternating steps from the same
weights (lr 0, so every step sees the same weights) and the medians of their step times are compared.
The sequential mode is `inplace` (MeZO's), the faster of zoo's sequential modes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

#: setting -> (model, mode, tuning). MiniLM's head mode has no prefix (peft's prefix needs a model with its own
#: task head), so the prefix setting is SmolLM2's, in prompt mode.
SETTINGS = {"head": ("minilm-l6", "head", "head"), "lora": ("minilm-l6", "head", "lora"),
            "prefix": ("smollm2-135m", "prompt", "prefix")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--n", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="attention kernel: torch's CPU flash attention has no vmap batching rule (a loop)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import zoo
    from zoo.finetune.build import load
    from zoo.provenance import machine
    from zoo.tasks import get_task

    task = get_task("sst2")
    rows = task.examples("train")[: args.batch_size]
    results = []
    for setting in args.settings:
        model_name, mode, tuning = SETTINGS[setting]
        built = load(model_name, task, mode, tuning, attn_implementation=args.attn,
                     template="review" if mode == "prompt" else None)
        model, scorer = built.model, built.scorer
        model.eval()
        enc = scorer.encode(rows)
        labels = torch.tensor([r.label for r in rows])
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)

        def closure():
            return torch.nn.functional.cross_entropy(scorer(model, enc), labels)

        with torch.no_grad():
            closure()  # fills a head run's feature cache outside the timings
        for n in args.n:
            opts = {m: zoo.get("n-spsa", model, n=n, lr=0.0, eps=1e-3, seed=0, perturbation=m)
                    for m in ("inplace", "batched")}
            times = {m: [] for m in opts}
            first = {}
            for r in range(args.rounds + 1):  # round 0 warms up
                for m, opt in opts.items():
                    t = time.perf_counter()
                    opt.step(closure)
                    if r:
                        times[m].append(time.perf_counter() - t)
                    first.setdefault(m, list(opt.last_record))
            med = {m: statistics.median(v) for m, v in times.items()}
            worst = max(abs(a - b) for a, b in zip(first["inplace"], first["batched"]))
            results.append({"setting": setting, "model": model_name, "tuning": tuning, "n": n, "points": 2 * n,
                            "trained_params": trained, "median_step_s": med,
                            "speedup": med["inplace"] / med["batched"], "max_loss_difference": worst})
            print(json.dumps(results[-1]), flush=True)
    out = {"task": "sst2", "attention": args.attn, "batch_size": args.batch_size, "rounds": args.rounds,
           "threads": torch.get_num_threads(), "results": results,
           "measured": {**machine(), "date": time.strftime("%Y-%m-%d")},
           "command": "python benchmarks/batched_speed.py " + " ".join(
               f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
               for k, v in vars(args).items() if k != "json" and v is not None)}
    if args.json:
        from zoo.files import write_json

        write_json(args.json, out, indent=1)


if __name__ == "__main__":
    main()
