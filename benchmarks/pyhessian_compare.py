"""zoo's lambda_max and trace against PyHessian's, on the same model, batch and parameters.

    pip install --no-deps pyhessian
    python benchmarks/pyhessian_compare.py [--k 4] [--out docs/theory_pyhessian.json]

Model: SmolLM2-135M-Instruct, SST-2 with the `review` template, the k-shot training batch
(2k examples), the loss of `zoo finetune` (mean cross-entropy over the candidates), the last
MLP block's parameters only (2.65M), eager attention, float32 weights and a float64 loss.

References: lambda_max from 30 Lanczos steps, tr H from Hutch++ with 150 HVPs (its standard
error is reported). PyHessian: power iteration (tol 1e-3, up to 100 HVPs) and Hutchinson
(tol 1e-3, up to 100 HVPs), its defaults. zoo: Lanczos and Hutch++ at a small budget.
Every HVP on either side is counted. PyHessian draws its probes from torch's global RNG, which
this script seeds (zoo's own code never touches it).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch
from torch import nn


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--zoo-lanczos", type=int, default=10)
    ap.add_argument("--zoo-matvecs", type=int, default=30)
    ap.add_argument("--reference-lanczos", type=int, default=30)
    ap.add_argument("--reference-matvecs", type=int, default=150)
    ap.add_argument("--out", default="docs/theory_pyhessian.json")
    args = ap.parse_args(argv)

    import importlib

    # `import pyhessian.hessian as ph` would give the class that pyhessian/__init__ re-exports
    ph = importlib.import_module("pyhessian.hessian")

    from zoo.finetune.build import load
    from zoo.finetune.commands import load_task, sample
    from zoo.theory import HessianOperator, effective_rank
    from zoo.theory.measure import select_parameters
    from zoo.theory.spectral import hutch_plus_plus, lanczos

    task = load_task("sst2")
    train = sample(task, "kshot", args.k, 0, None).train
    built = load("smollm2-135m", task, "prompt", "full", template="review", attn_implementation="eager")
    model, scorer = built.model, built.scorer
    where, params = select_parameters(model, "last-mlp")
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    enc = scorer.encode(train)

    def loss_fn(m, batch):
        return nn.functional.cross_entropy(scorer(m, batch).double(), batch.labels)

    op = HessianOperator(model, loss_fn, enc, params=params)
    out = {"model": "smollm2-135m", "task": "sst2 (review)", "batch": len(train), "params": where, "dim": op.dim,
           "date": str(date.today()), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
           "command": "python benchmarks/pyhessian_compare.py"}

    def timed(fn):
        before, t = op.matvecs, time.time()
        res = fn()
        return res, op.matvecs - before, time.time() - t

    lz, n, s = timed(lambda: lanczos(op, op.dim, args.reference_lanczos, seed=11))
    tr, n2, s2 = timed(lambda: hutch_plus_plus(op, op.dim, args.reference_matvecs, seed=12))
    out["reference"] = {"lambda_max": lz.lambda_max, "lanczos_hvps": n, "trace": tr.trace,
                        "trace_stderr": tr.stderr, "trace_hvps": n2, "seconds": s + s2}
    res, n, s = timed(lambda: effective_rank(op, op.dim, num_matvecs=args.zoo_matvecs,
                                             lanczos_steps=args.zoo_lanczos, seed=0))
    out["zoo"] = {"lambda_max": res.lambda_max, "trace": res.trace, "trace_stderr": res.trace_stderr,
                  "hvps": n, "lanczos_hvps": args.zoo_lanczos, "seconds": s}
    Path(args.out).write_text(json.dumps(out, indent=1))  # kept if PyHessian fails below

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, batch):
            return scorer(self.inner, batch).double()

    calls = [0]
    original = ph.hessian_vector_product

    def counted(*a, **kw):
        calls[0] += 1
        return original(*a, **kw)

    ph.hessian_vector_product = counted
    torch.manual_seed(0)
    t = time.time()
    h = ph.hessian(Wrapped(), nn.functional.cross_entropy, data=(enc, enc.labels), cuda=False)
    setup = time.time() - t
    t = time.time()
    eig, _ = h.eigenvalues(maxIter=100, tol=1e-3, top_n=1)
    eig_hvps, eig_s = calls[0], time.time() - t
    t = time.time()
    vhv = h.trace(maxIter=100, tol=1e-3)
    out["pyhessian"] = {"lambda_max": float(eig[0]), "power_hvps": eig_hvps, "trace": float(sum(vhv) / len(vhv)),
                        "trace_hvps": calls[0] - eig_hvps, "hvps": calls[0],
                        "seconds": setup + eig_s + time.time() - t}
    ref = out["reference"]
    for side in ("zoo", "pyhessian"):
        out[side]["lambda_max_rel_error"] = abs(out[side]["lambda_max"] - ref["lambda_max"]) / abs(ref["lambda_max"])
        out[side]["trace_rel_error"] = abs(out[side]["trace"] - ref["trace"]) / abs(ref["trace"])
    out["hvp_ratio_zoo_over_pyhessian"] = out["zoo"]["hvps"] / out["pyhessian"]["hvps"]
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
