"""Parameter drift of perturbation='inplace' (and 'exact') after many lr=0 steps.

With lr = 0 a ZO step should leave the weights unchanged. In place, the
three sweeps (+eps z, -2 eps z, +eps z) round each time, so the weights drift.
This script measures that drift per dtype and writes JSON and a plot.

Usage:
    python benchmarks/drift.py --steps 1000 --out docs/drift
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import torch
from tqdm import tqdm

import zoo

try:
    from benchmarks.models import random_batch, random_model, smollm2_135m_config
except ImportError:  # run as a script from the repo root
    from models import random_batch, random_model, smollm2_135m_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def drift_stats(before, after):
    diff = sum((a.double() - b.double()).square().sum().item() for a, b in zip(after, before))
    norm = sum(b.double().square().sum().item() for b in before)
    changed = sum((a != b).sum().item() for a, b in zip(after, before))
    total = sum(b.numel() for b in before)
    max_abs = max((a.double() - b.double()).abs().max().item() for a, b in zip(after, before))
    return {"relative_norm": (diff / norm) ** 0.5, "max_abs": max_abs, "fraction_changed": changed / total}


def measure(dtype_name, perturbation, steps, eps, layers, vocab, checkpoints):
    cfg = smollm2_135m_config()
    cfg.num_hidden_layers = layers
    cfg.vocab_size = vocab
    model = random_model(cfg, DTYPES[dtype_name])
    batch = random_batch(cfg.vocab_size, batch=1, seq=8)
    before = [p.detach().clone() for p in model.parameters()]
    opt = zoo.get("mezo-sgd", model, lr=0.0, eps=eps, perturbation=perturbation, seed=0)
    curve = []
    for step in tqdm(range(1, steps + 1), desc=f"{dtype_name}/{perturbation}", leave=False):
        opt.step(lambda: model(**batch).loss)
        if step in checkpoints:
            curve.append({"step": step, **drift_stats(before, [p.detach() for p in model.parameters()])})
    return {"dtype": dtype_name, "perturbation": perturbation, "params": sum(b.numel() for b in before),
            "curve": curve, **curve[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--layers", type=int, default=2, help="transformer layers of the SmolLM2-135M config")
    ap.add_argument("--vocab", type=int, default=8192, help="vocabulary (the real one is 49152)")
    ap.add_argument("--out", default="docs/drift")
    args = ap.parse_args()
    checkpoints = sorted({s for s in (1, 3, 10, 30, 100, 300, 1000, 3000, args.steps) if s <= args.steps})
    results = []
    for dtype_name in DTYPES:
        for perturbation in ("inplace", "exact"):
            t0 = time.time()
            r = measure(dtype_name, perturbation, args.steps, args.eps, args.layers, args.vocab, checkpoints)
            r["seconds"] = time.time() - t0
            results.append(r)
            print(f"{dtype_name:9s} {perturbation:8s} rel-norm {r['relative_norm']:.3e} max-abs {r['max_abs']:.3e} "
                  f"changed {r['fraction_changed']:.3f}")
    meta = {"command": f"python benchmarks/drift.py --steps {args.steps} --eps {args.eps} --layers {args.layers} "
                       f"--vocab {args.vocab} --out {args.out}", "date": str(date.today()), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__}
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    plot(results, args.out + ".png", args)


def plot(results, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        if r["perturbation"] != "inplace":
            continue
        xs = [c["step"] for c in r["curve"]]
        ax.loglog(xs, [c["relative_norm"] for c in r["curve"]], marker="o", label=r["dtype"])
    ax.set_xlabel("lr = 0 steps")
    ax.set_ylabel("||theta_t - theta_0|| / ||theta_0||")
    ax.set_title(f"in-place drift, eps={args.eps} (exact: 0 for all dtypes)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
