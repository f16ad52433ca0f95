"""Gradient quality: how close each estimator's ĝ comes to the true gradient, per forward pass.

On one real batch, the true gradient g takes one backward. Each estimator then
draws `samples` estimates ĝ (fresh directions each time, weights restored) and
we report, over those draws,

    cosine(ĝ, g)                 mean and std
    relative MSE       E‖ĝ − g‖² / ‖g‖²
    relative variance  E‖ĝ − Eĝ‖² / ‖g‖²   (sample variance of the draws)

at the estimator's own cost in forward passes. n-SPSA is swept over n (2n
forwards), Sparse MeZO over sparsity and SubZero over rank, so the trade-off of
each knob is visible. Gaussian MeZO is unbiased, so its relative MSE is about
(d + n + 1)/n − 1 ≈ d/n (MeZO Lemma 2 with B = full batch); masked and
low-rank variants trade bias for variance.
"""

from __future__ import annotations

import inspect
import statistics

import torch
from ..progress import progress as tqdm_bar

from .. import estimators
from ..finetune.objectives import get_objective


def variants(sweeps: dict) -> list[tuple[str, str, dict]]:
    """(label, estimator, hyper) for every registered estimator at its defaults, plus the sweeps."""
    out = [(name, name, {}) for name in estimators.available()]
    out += [(f"n-spsa n={n}", "n-spsa", {"n": n}) for n in sweeps.get("n", [])]
    out += [(f"sparse-mezo s={s:g}", "sparse-mezo", {"sparsity": s}) for s in sweeps.get("sparsity", [])]
    out += [(f"subzero r={r}", "subzero", {"rank": r}) for r in sweeps.get("rank", [])]
    return out


def settings(name: str, hyper: dict) -> str:
    """The estimator's class and every keyword it is built with, its defaults filled in.

    Two variants with equal settings draw the same estimates from the same seed and weights
    (`mezo-sgd` is `n-spsa n=1`; a sweep usually holds each estimator's default), so the
    section computes such a row once.
    """
    spec = estimators.spec(name)
    keywords = {k: p.default for k, p in inspect.signature(spec.factory).parameters.items()
                if p.default is not inspect.Parameter.empty}
    keywords.update(spec.defaults)
    keywords.update(hyper)
    return f"{spec.factory.__module__}.{spec.factory.__qualname__}{sorted(keywords.items())!r}"


def _flat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1).double() for t in ts])


def gradient_quality(built, examples, *, eps: float, samples: int, sweeps: dict, seed: int = 0,
                     objective: str = "ce", progress: bool = False, done: list[dict] | None = None,
                     on_row=None) -> list[dict]:
    """One row per variant (see the module docstring). Rows are independent (each estimator is
    seeded afresh), so `done` rows from an interrupted call are kept and their variants skipped;
    `on_row(rows)` is called after each new row, to save progress."""
    model, scorer = built.model, built.scorer
    model.train(False)
    params = [p for p in model.parameters() if p.requires_grad]
    enc = scorer.encode(examples)
    loss_fn = get_objective(objective)

    def closure():
        return loss_fn(scorer(model, enc), enc.labels)

    with torch.enable_grad():
        g = _flat(torch.autograd.grad(closure(), params))
    gnorm2 = float(g.square().sum())
    rows = list(done or [])
    have = {r["label"] for r in rows}
    todo = [v for v in variants(sweeps) if v[0] not in have]
    drawn = {settings(r["estimator"], r["hyper"]): r for r in rows}
    bar = tqdm_bar(total=len({settings(name, hyper) for _, name, hyper in todo} - set(drawn)) * samples,
                   desc="gradient quality", unit="draw", enabled=progress)
    # in-place perturbation returns the weights to within float32 rounding, not to their bits; each
    # row restarts from the same bits, so rows are independent and an interrupted run resumes exactly
    start = [p.detach().clone() for p in params]
    for label, name, hyper in todo:
        same = drawn.get(settings(name, hyper))
        if same is not None:
            rows.append({**same, "label": label, "estimator": name, "hyper": hyper})
            if on_row is not None:
                on_row(rows)
            continue
        with torch.no_grad():
            for p, p0 in zip(params, start):
                p.copy_(p0)
        opt = estimators.get(name, model, lr=1.0, eps=eps, seed=seed, **hyper)
        cos, mse, sq_norms, total = [], [], [], torch.zeros_like(g)
        for _ in range(samples):
            with torch.no_grad():
                e = _flat(opt.estimate(closure))
            cos.append(float(e @ g) / max(float(e.norm() * g.norm()), 1e-300))
            mse.append(float((e - g).square().sum()) / gnorm2)
            sq_norms.append(float(e.square().sum()))
            total += e
            bar.update()
        # unbiased sample variance around the draws' own mean: (sum |e_i|^2 - |sum e_i|^2 / m) / (m - 1)
        variance = (sum(sq_norms) - float(total.square().sum()) / samples) / (samples - 1) if samples > 1 else 0.0
        rows.append({"label": label, "estimator": name, "hyper": hyper, "forwards": opt.forwards_per_step,
                     "cosine": statistics.fmean(cos), "cosine_std": statistics.stdev(cos) if samples > 1 else 0.0,
                     "relative_mse": statistics.fmean(mse),
                     "relative_variance": variance / gnorm2, "samples": samples, "dim": g.numel()})
        drawn[settings(name, hyper)] = rows[-1]
        if on_row is not None:
            on_row(rows)
    bar.close()
    with torch.no_grad():
        for p, p0 in zip(params, start):
            p.copy_(p0)
    order = {v[0]: i for i, v in enumerate(variants(sweeps))}
    return sorted(rows, key=lambda r: order.get(r["label"], len(order)))
