"""zoo's lambda_max and trace against PyHessian's: error against HVPs, on the same model and batch.

    pip install --no-deps pyhessian
    python benchmarks/pyhessian_compare.py [--k 4] [--trials 8] [--out docs/theory_pyhessian.json]

Model: SmolLM2-135M-Instruct, SST-2 with the `review` template, the k-shot training batch
(2k examples), the loss of `zoo finetune` (mean cross-entropy over the candidates), the last
MLP block's parameters only (2.65M), eager attention, float32 weights and a float64 loss.
Both sides keep the first backward's graph, so an HVP costs the same double backward on each;
the comparison is in HVPs, and the seconds per HVP are measured too.

References: lambda_max from 30 Lanczos steps; tr H from Hutch++ with `--reference-matvecs` HVPs
(Hutch++ holds its sketch as dense dim x m/3 float64 blocks: 300 HVPs here took over 16 GB).
- lambda_max: PyHessian's power iteration (its defaults: tol 1e-3, up to 100 HVPs) against zoo's
  Lanczos at a few fixed step counts, `--trials` random starts each.
- trace: PyHessian's Hutchinson forced to m probes (tol disabled) for m in `--budgets`, against
  zoo's Hutch++ at half those budgets, `--trials` independent draws each. Both are unbiased, so
  their spread over draws (std / |reference|) is the accuracy, which needs no exact reference;
  the RMS error against the reference is reported too (it adds the reference's own error). PyHessian's own stopping rule
  (tol 1e-3) is run too, to show how many HVPs it spends by default.
PyHessian draws from torch's global RNG, which this script seeds per trial (zoo's code never
touches it).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch
from torch import nn


def _rms_rel(values: list[float], ref: float) -> float:
    return math.sqrt(statistics.fmean([(v - ref) ** 2 for v in values])) / abs(ref)


def _spread(values: list[float], ref: float) -> dict:
    return {"rel_std": statistics.stdev(values) / abs(ref), "rms_rel_error": _rms_rel(values, ref),
            "mean": statistics.fmean(values), "values": values}


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, rows in (("PyHessian Hutchinson", out["trace"]["pyhessian"]), ("zoo Hutch++", out["trace"]["zoo"])):
        a.loglog([r["hvps"] for r in rows], [r["rel_std"] for r in rows], "o-", label=label)
    a.set_xlabel("HVPs")
    a.set_ylabel("std of tr H over draws / tr H")
    a.legend(fontsize=8)
    a.grid(alpha=0.3, which="both")
    pw = out["lambda_max"]["pyhessian"]
    b.loglog([r["hvps"] for r in out["lambda_max"]["zoo"]],
             [max(r["max_rel_error"], 1e-16) for r in out["lambda_max"]["zoo"]], "o-", label="zoo Lanczos (worst start)")
    b.loglog([pw["mean_hvps"]], [max(pw["max_rel_error"], 1e-16)], "s", label="PyHessian power iteration (worst)")
    b.set_xlabel("HVPs")
    b.set_ylabel("relative error of λ_max")
    b.legend(fontsize=8)
    b.grid(alpha=0.3, which="both")
    fig.suptitle(f"SmolLM2-135M, {out['params']} ({out['dim']:,} params), SST-2 batch {out['batch']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _joint(op, path: Path, command: str) -> int:
    """Both numbers at once, at half PyHessian's HVPs. PyHessian spends power-iteration HVPs on
    lambda_max plus Hutchinson HVPs on the trace. zoo is measured two ways:
    - sketch: Hutch++ at half the trace's HVPs; lambda_max is the largest Ritz value of its
      sketch, at no further HVP (zoo's draws of the trace rows rerun, same seeds, same traces);
    - lanczos+hutch++: 4 Lanczos HVPs for lambda_max (their error is in the lambda_max rows) and
      Hutch++ with the rest of half PyHessian's total, fresh draws.
    """
    from tqdm import tqdm

    from zoo.theory.spectral import hutch_plus_plus

    out = json.loads(path.read_text())
    ref_l, ref_t = out["reference"]["lambda_max"], out["reference"]["trace"]
    power = out["lambda_max"]["pyhessian"]
    lanczos4 = next(r for r in out["lambda_max"]["zoo"] if r["hvps"] == 4)
    old = {r["pyhessian"]["hvps"]: r for r in out.get("joint", {}).get("rows", [])}
    rows = []
    for pyh, z in zip(out["trace"]["pyhessian"], out["trace"]["zoo"]):
        total = power["mean_hvps"] + pyh["hvps"]
        row = {"pyhessian": {"hvps": total, "lambda_max_max_rel_error": power["max_rel_error"],
                             "trace_rel_std": pyh["rel_std"]}}
        if "zoo_sketch" in old.get(total, {}):
            row["zoo_sketch"] = old[total]["zoo_sketch"]
        else:
            est = [hutch_plus_plus(op, op.dim, z["hvps"], seed=2000 + trial)
                   for trial in tqdm(range(out["trials"]), desc=f"Hutch++ {z['hvps']} HVPs, sketch")]
            drift = max(abs(e.trace - v) / abs(v) for e, v in zip(est, z["values"]))
            if drift > 1e-9:
                raise RuntimeError(f"the rerun drew other traces (relative difference {drift:.2g})")
            ritz = [e.ritz_max for e in est]
            row["zoo_sketch"] = {"hvps": z["hvps"], "trace_rel_std": z["rel_std"], "lambda_max_values": ritz,
                                 "lambda_max_max_rel_error": max(abs(x - ref_l) / abs(ref_l) for x in ritz),
                                 "lambda_max_below_reference": all(x <= ref_l * (1 + 1e-9) for x in ritz)}
        if "zoo_lanczos_hutchpp" in old.get(total, {}):
            row["zoo_lanczos_hutchpp"] = old[total]["zoo_lanczos_hutchpp"]
        else:
            rest = int(total // 2) - 4
            traces = [hutch_plus_plus(op, op.dim, rest, seed=3000 + trial).trace
                      for trial in tqdm(range(out["trials"]), desc=f"Lanczos 4 + Hutch++ {rest} HVPs")]
            row["zoo_lanczos_hutchpp"] = {"hvps": 4 + rest, "lambda_max_max_rel_error": lanczos4["max_rel_error"],
                                          **_spread(traces, ref_t)}
            row["zoo_lanczos_hutchpp"]["trace_rel_std"] = row["zoo_lanczos_hutchpp"].pop("rel_std")
        rows.append(row)
        out["joint"] = {"command": command, "date": str(date.today()), "reference_trace": ref_t, "rows": rows}
        path.write_text(json.dumps(out, indent=1))
    for r in rows:
        print(json.dumps({k: {a: b for a, b in v.items() if a not in ("lambda_max_values", "values")}
                          for k, v in r.items()}))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--budgets", type=int, nargs="+", default=[16, 32, 64], help="PyHessian's probes per trace")
    ap.add_argument("--lanczos-steps", type=int, nargs="+", default=[3, 4, 6])
    ap.add_argument("--reference-lanczos", type=int, default=30)
    ap.add_argument("--reference-matvecs", type=int, default=150)
    ap.add_argument("--out", default="docs/theory_pyhessian.json")
    ap.add_argument("--joint-only", action="store_true",
                    help="only add the joint comparison to an existing --out: rerun zoo's Hutch++ draws "
                         "(same seeds) and take lambda_max from their sketches")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)

    import importlib

    from tqdm import tqdm

    # `import pyhessian.hessian as ph` would give the class that pyhessian/__init__ re-exports
    ph = importlib.import_module("pyhessian.hessian")

    from zoo.finetune.build import load
    from zoo.finetune.commands import load_task, sample
    from zoo.theory import HessianOperator
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
    if args.joint_only:
        return _joint(op, Path(args.out), "python benchmarks/pyhessian_compare.py " + " ".join(argv or []))
    out = {"model": "smollm2-135m", "task": "sst2 (review)", "batch": len(train), "params": where, "dim": op.dim,
           "trials": args.trials, "date": str(date.today()),
           "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
           "command": "python benchmarks/pyhessian_compare.py " + " ".join(argv or [])}

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
    t = time.time()
    h = ph.hessian(Wrapped(), nn.functional.cross_entropy, data=(enc, enc.labels), cuda=False)
    pyh_setup = time.time() - t
    t = time.time()
    op(torch.zeros(op.dim, dtype=torch.float64))  # builds the kept graph, as PyHessian's setup does
    zoo_setup = time.time() - t

    def seconds_per_hvp(fn, n=5):
        times = []
        for _ in range(n):
            t = time.time()
            fn()
            times.append(time.time() - t)
        return statistics.median(times)

    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    vp = [x.float() for x in op._split(v)]
    out["seconds_per_hvp"] = {"zoo": seconds_per_hvp(lambda: op(v)),
                              "pyhessian": seconds_per_hvp(lambda: original(h.gradsH, h.params, vp)),
                              "setup_zoo": zoo_setup, "setup_pyhessian": pyh_setup}
    bar = tqdm(desc="HVPs", unit="hvp")

    def counting(fn):
        before, calls_before = op.matvecs, calls[0]
        res = fn()
        n = op.matvecs - before + calls[0] - calls_before
        bar.update(n)
        return res, n

    (lz, n) = counting(lambda: lanczos(op, op.dim, args.reference_lanczos, seed=11))
    (tr, n2) = counting(lambda: hutch_plus_plus(op, op.dim, args.reference_matvecs, seed=12))
    ref_l, ref_t = lz.lambda_max, tr.trace
    out["reference"] = {"lambda_max": ref_l, "lanczos_hvps": n, "trace": ref_t, "trace_stderr": tr.stderr,
                        "trace_hvps": n2}
    Path(args.out).write_text(json.dumps(out, indent=1))

    # lambda_max
    power = []
    for trial in range(args.trials):
        torch.manual_seed(trial)
        (eig, _), n = counting(lambda: h.eigenvalues(maxIter=100, tol=1e-3, top_n=1))
        power.append((float(eig[0]), n))
    zoo_l = []
    for steps in args.lanczos_steps:
        vals = [counting(lambda: lanczos(op, op.dim, steps, seed=100 + trial))[0].lambda_max
                for trial in range(args.trials)]
        zoo_l.append({"hvps": steps, "max_rel_error": max(abs(x - ref_l) / abs(ref_l) for x in vals),
                      "values": vals})
    out["lambda_max"] = {
        "pyhessian": {"mean_hvps": statistics.fmean(n for _, n in power), "hvps": [n for _, n in power],
                      "max_rel_error": max(abs(x - ref_l) / abs(ref_l) for x, _ in power),
                      "values": [x for x, _ in power]},
        "zoo": zoo_l,
    }
    Path(args.out).write_text(json.dumps(out, indent=1))

    # trace
    def pyh_trace(m, trial, tol):
        torch.manual_seed(1000 + trial)
        vhv, n = counting(lambda: h.trace(maxIter=m, tol=tol))
        return statistics.fmean(vhv), n

    pyh_rows, zoo_rows = [], []
    for m in args.budgets:
        vals = [pyh_trace(m, trial, -1.0)[0] for trial in range(args.trials)]  # tol < 0: exactly m probes
        pyh_rows.append({"hvps": m, **_spread(vals, ref_t)})
        half = m // 2
        est = [counting(lambda: hutch_plus_plus(op, op.dim, half, seed=2000 + trial))[0]
               for trial in range(args.trials)]
        zoo_rows.append({"hvps": half, **_spread([e.trace for e in est], ref_t), "stderrs": [e.stderr for e in est]})
        out["trace"] = {"reference": ref_t, "pyhessian": pyh_rows, "zoo": zoo_rows}
        Path(args.out).write_text(json.dumps(out, indent=1))
    default = [pyh_trace(100, trial, 1e-3) for trial in range(min(args.trials, 4))]
    out["trace"]["pyhessian_default_tol"] = {"hvps": [n for _, n in default], "values": [x for x, _ in default],
                                             "rms_rel_error": _rms_rel([x for x, _ in default], ref_t)}
    bar.close()
    Path(args.out).write_text(json.dumps(out, indent=1))
    _plot(out, Path(args.out).with_suffix(".png"))
    print(json.dumps({k: out[k] for k in ("seconds_per_hvp", "reference")}, indent=1))
    for p, z in zip(pyh_rows, zoo_rows):
        print(f"trace: PyHessian {p['hvps']} HVPs rel std {p['rel_std']:.4f} | zoo {z['hvps']} HVPs "
              f"rel std {z['rel_std']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
