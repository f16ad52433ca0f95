"""Preliminary: Hessian effective rank of SmolLM2-135M on SST-2, prompt vs no prompt.

A first real-model measurement for the theory issue, before its CLI exists.
Parameters: the last transformer block's MLP (gate, up, down: 2.65M weights),
the same subset in both settings. Batch: k examples per class of SST-2 train
(seed 0). Loss:
- prompt: "Review: {sentence}\\nSentiment:" and cross-entropy over the
  next-token logits of " positive" / " negative" (MeZO's prompt-based loss);
- no prompt: the sentence alone, a new linear head on the last token's final
  hidden state (weights N(0, 1/576) from a private generator, zero bias).

    python benchmarks/theory_rank_preliminary.py --k 8 --out docs/theory_preliminary.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import torch
from torch import nn

from zoo.tasks import few_shot, get_task
from zoo.models import load_causal_lm
from zoo.theory import HessianOperator, effective_rank, gamma, slq


def build(model, tok, rows, prompt: bool):
    texts = [f"Review: {s}\nSentiment:" if prompt else s for s, _ in rows]
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    labels = torch.tensor([y for _, y in rows])
    last = enc["attention_mask"].sum(1) - 1
    if prompt:
        words = torch.tensor([tok(" negative").input_ids[0], tok(" positive").input_ids[0]])

        def loss_fn(m, b):
            logits = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            picked = logits[torch.arange(len(last)), last][:, words].double()
            return nn.functional.cross_entropy(picked, labels)
    else:
        g = torch.Generator().manual_seed(0)
        head = torch.randn(2, model.config.hidden_size, generator=g, dtype=torch.float64) / model.config.hidden_size**0.5

        def loss_fn(m, b):
            h = m.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            return nn.functional.cross_entropy(h[torch.arange(len(last)), last].double() @ head.T, labels)

    return loss_fn, dict(enc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--matvecs", type=int, default=45)
    ap.add_argument("--lanczos", type=int, default=15)
    ap.add_argument("--slq-steps", type=int, default=20)
    ap.add_argument("--slq-probes", type=int, default=2)
    ap.add_argument("--out", default="docs/theory_preliminary.json")
    args = ap.parse_args()
    # the k-shot sample changed with zoo.tasks (2026-11-24, session 2): numbers in docs/theory.md used the old one
    rows = [(e.text, e.label) for e in few_shot(get_task("sst2"), args.k, 0).train]
    model, tok = load_causal_lm("smollm2-135m", attn_implementation="eager")
    params = list(model.model.layers[-1].mlp.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    results = {}
    for prompt in (True, False):
        loss_fn, batch = build(model, tok, rows, prompt)
        op = HessianOperator(model, loss_fn, batch, params=params)
        t0 = time.time()
        res = effective_rank(op, op.dim, num_matvecs=args.matvecs, lanczos_steps=args.lanczos, seed=0)
        dens = slq(op, op.dim, steps=args.slq_steps, probes=args.slq_probes, seed=1)
        with torch.no_grad():
            loss = loss_fn(model, batch).item()
        key = "prompt" if prompt else "no_prompt"
        ranks = dens.ranks()
        results[key] = {**res.to_dict(), "loss": loss, "seconds": time.time() - t0,
                        "gamma_n1": gamma(res.r, 1) if res.r > 0 else None,
                        "slq": {**ranks, "lambda_max": dens.lambda_max, "lambda_min": float(dens.nodes.min()),
                                "matvecs": dens.matvecs},
                        "slq_nodes": dens.nodes.tolist(), "slq_weights": dens.weights.tolist()}
        print(key, json.dumps(results[key]), flush=True)
    meta = {"command": f"python benchmarks/theory_rank_preliminary.py --k {args.k} --matvecs {args.matvecs} "
                       f"--lanczos {args.lanczos} --out {args.out}",
            "date": str(date.today()), "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
            "params": "model.layers[29].mlp (gate_proj, up_proj, down_proj)", "batch": 2 * args.k}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    plot(results, args.out.replace(".json", ".png"), meta)


def plot(results, path, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, r in results.items():
        nodes = torch.tensor(r["slq_nodes"], dtype=torch.float64)
        weights = torch.tensor(r["slq_weights"], dtype=torch.float64)
        lo, hi = nodes.min().item(), nodes.max().item()
        grid = torch.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 800, dtype=torch.float64)
        width = 0.01 * (hi - lo)
        diff = grid[:, None] - nodes[None, :]
        dens = (torch.exp(-0.5 * (diff / width) ** 2) / (width * (2 * torch.pi) ** 0.5)) @ weights
        ax.semilogy(grid, dens.clamp(min=1e-8), label=f"{key.replace('_', ' ')} (λmax {r['slq']['lambda_max']:.3g})")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("smoothed SLQ density")
    ax.set_title(f"SmolLM2-135M last MLP, SST-2 batch {meta['batch']}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
