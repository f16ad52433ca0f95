"""`zoo bench synthetic`: every estimator on objectives whose Hessian spectrum is set, against the theory.

The objectives are functions of a few matrix parameters (so that layer subsets, blocks and low-rank
directions have something to act on) whose Hessian is diagonal with

    h_i = 1 for r coordinates spread evenly over theta,   h_i = 0 for the other d - r,

so tr H / lambda_max = r exactly, whatever the dimension d. The d - r flat directions are what a ZO
estimator wastes its perturbation on: Lemma 2 says that costs nothing beyond gamma(r, n), since the
loss does not see them. (A spectrum with a small but nonzero tail behaves differently: there the
noise a ZO step puts into the tail outweighs its slow progress, and no two-point estimator reached
gradient descent's loss within 4 gamma times its steps at r = 10, d >= 1e4 when we tried it.)

- `Quadratic`: L(theta) = 1/2 sum_i h_i theta_i^2 (+ a noise floor: sigma * xi per evaluation,
  xi ~ N(0, 1) from a generator of the problem's own, so a run repeats);
- `Logistic`: the mean logistic loss of a linear classifier on Gaussian features whose covariance is
  diag(h) (its Hessian at 0 is diag(h) / 4).

Two parts, each resumable row by row (DIR/synthetic.json):

1. Equal forwards. Every registered estimator, on each problem of `PROBLEMS`, gets the same forward
   passes; its lr is the best of a small grid (final loss, on the objective itself), scaled by the
   theory's 1/gamma(r, 1) for the estimators that step along g_hat and absolute for the adaptive
   ones (mezo-adam, zo-sign). Reported: the loss curve against forwards, and the forwards to reach
   half of MeZO-SGD's loss decrease ("not reached" where it is not).
2. Slowdown against the theory. On quadratics, gradient descent at eta = eta_scale / lambda_max runs
   `GD_STEPS` steps; its loss is the target. Each two-point estimator then runs at eta / gamma(r, n)
   (gamma of its sampler; the subspace and sparse variants use the Gaussian formula) and its steps to
   the target over GD's are its measured slowdown, set beside the predicted gamma, over r at a fixed
   d and over d at a fixed r. Lemma 2 predicts that it tracks r and not d.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from .. import estimators
from ..files import read_json, save_figure, write_json, write_text
from ..progress import progress as progress_bar
from ..provenance import machine
from ..theory.slowdown import gamma

LAYERS = 4


def spectrum(d: int, r: int) -> torch.Tensor:
    """h with r ones spread evenly over d coordinates (every layer gets its share) and zeros elsewhere:
    tr h / max h = r (an integer, 1 <= r <= d)."""
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= d:
        raise ValueError(f"r: the effective rank must be an integer in [1, d={d}], got {r!r}")
    h = torch.zeros(d, dtype=torch.float32)
    h[torch.linspace(0, d - 1, r).round().long()] = 1.0
    return h


class _Problem(nn.Module):
    """theta as LAYERS matrices (a ModuleList of blocks, as a transformer's), of d elements in all."""

    def __init__(self, d: int, r: float, seed: int):
        super().__init__()
        if d % LAYERS or d < LAYERS:
            raise ValueError(f"d: must be a multiple of {LAYERS}, got {d}")
        per = d // LAYERS
        # near-square matrices, so that low-rank directions (SubZero, LOZO; rank 16) apply to them
        cols = max(c for c in range(1, math.isqrt(per) + 1) if per % c == 0)
        self.layers = nn.ModuleList(nn.Module() for _ in range(LAYERS))
        g = torch.Generator().manual_seed(seed)
        start = torch.randn(d, generator=g)
        for i, layer in enumerate(self.layers):
            layer.weight = nn.Parameter(start[i * per:(i + 1) * per].reshape(-1, cols).clone())
        self.d, self.r = d, r
        self.register_buffer("h", spectrum(d, r), persistent=False)

    def theta(self) -> torch.Tensor:
        return torch.cat([layer.weight.reshape(-1) for layer in self.layers])

    def gradient(self) -> list[torch.Tensor]:
        with torch.enable_grad():
            loss = self.exact_loss()
            return list(torch.autograd.grad(loss, [layer.weight for layer in self.layers]))


class Quadratic(_Problem):
    """1/2 sum h_i theta_i^2, plus `noise` * N(0, 1) per evaluation (a noise floor)."""

    def __init__(self, d: int, r: float, noise: float = 0.0, seed: int = 0):
        super().__init__(d, r, seed)
        self.noise = noise
        self._noise = torch.Generator().manual_seed(seed + 1)

    def exact_loss(self) -> torch.Tensor:
        t = self.theta()
        return 0.5 * (self.h * t * t).sum()

    def forward(self) -> torch.Tensor:
        loss = self.exact_loss()
        if self.noise:
            loss = loss + self.noise * torch.randn((), generator=self._noise)
        return loss


class Logistic(_Problem):
    """The mean logistic loss on `samples` Gaussian points with covariance diag(h), labels from a
    random linear teacher; theta starts at 0."""

    def __init__(self, d: int, r: float, samples: int = 256, seed: int = 0):
        super().__init__(d, r, seed)
        g = torch.Generator().manual_seed(seed + 2)
        self.register_buffer("x", torch.randn(samples, d, generator=g) * self.h.sqrt(), persistent=False)
        teacher = torch.randn(d, generator=g)
        self.register_buffer("y", torch.sign(self.x @ teacher + 1e-12), persistent=False)
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.zero_()

    def exact_loss(self) -> torch.Tensor:
        return nn.functional.softplus(-self.y * (self.x @ self.theta())).mean()

    forward = exact_loss


#: The problems of the equal-forwards part: (label, constructor, kwargs).
PROBLEMS = [
    ("quadratic d=1e4 r=10", Quadratic, {"d": 10_000, "r": 10}),
    ("quadratic d=1e4 r=1000", Quadratic, {"d": 10_000, "r": 1000}),
    ("quadratic d=1e4 r=10, noise 1e-3", Quadratic, {"d": 10_000, "r": 10, "noise": 1e-3}),
    ("logistic d=1e3 r=10", Logistic, {"d": 1_000, "r": 10}),
]
BUDGET = 400  # forward passes per run
SEEDS = (0, 1, 2)
#: lr multipliers of 1/gamma(r, 1) for estimators that step along g_hat; absolute lrs for adaptive ones
SCALED_GRID, ADAPTIVE_GRID = (0.25, 0.5, 1.0), (1e-3, 1e-2, 1e-1)
ADAPTIVE = {"mezo-adam", "zo-sign"}
#: The slowdown part: two-point estimators (name, hyper, sampler for gamma)
TWO_POINT = [("mezo-sgd", {}, "gaussian"), ("n-spsa", {"n": 4}, "gaussian"),
             ("n-spsa", {"n": 4, "sampler": "rademacher"}, "gaussian"),
             ("n-spsa", {"n": 4, "sampler": "sphere"}, "sphere"),
             ("sparse-mezo", {}, "gaussian"), ("subzero", {"rank": 2}, "gaussian")]
RANKS, RANK_D = (1, 3, 10, 30, 100, 300), 10_000
DIMS, DIM_R = (1_000, 10_000, 100_000, 1_000_000, 10_000_000), 10
GD_STEPS, ETA_SCALE, CAP = 5, 0.5, 4.0


def _hyper(name: str) -> dict:
    return {"blocks": 2} if name == "block-zo" else {"interval": 2} if name == "lozo" else {}


def _run(problem: _Problem, name: str, lr: float, forwards: int, seed: int, hyper=None) -> list[tuple[int, float]]:
    """(forward passes so far, exact loss) after each step, from the problem's start."""
    opt = estimators.get(name, problem, lr=lr, eps=1e-3, seed=seed, **{**_hyper(name), **(hyper or {})})
    curve = [(0, float(problem.exact_loss().detach()))]
    spec = estimators.spec(name)
    steps = spec.steps_within(forwards, **{**spec.defaults, **_hyper(name), **(hyper or {})})
    for _ in range(steps):
        opt.step(problem)
        loss = float(problem.exact_loss().detach())
        curve.append((opt.zo_state["forward_passes"], loss))
        if not math.isfinite(loss) or loss > 1e6 * max(curve[0][1], 1.0):
            break  # diverged
    return curve


def equal_forwards(rows: list[dict], save, progress: bool) -> list[dict]:
    done = {(r["problem"], r["estimator"]) for r in rows}
    todo = [(label, make, kw, name) for label, make, kw in PROBLEMS for name in estimators.available()
            if (label, name) not in done]
    bar = progress_bar(todo, desc="synthetic: equal forwards", enabled=progress, unit="run")
    for label, make, kw, name in bar:
        r = kw["r"]
        grid = ADAPTIVE_GRID if name in ADAPTIVE else tuple(m / gamma(r, 1) for m in SCALED_GRID)
        best = None
        t0 = time.perf_counter()
        for lr in grid:
            curves = [_run(make(seed=seed, **kw), name, lr, BUDGET, seed) for seed in SEEDS]
            finals = [c[-1][1] for c in curves]
            score = statistics.mean(f if math.isfinite(f) else math.inf for f in finals)
            if best is None or score < best["final_mean"]:
                best = {"lr": lr, "final_mean": score, "finals": finals, "curves": curves}
        rows.append({"problem": label, "estimator": name, "lr_grid": list(grid), "lr": best["lr"],
                     "final_loss": best["finals"], "final_mean": best["final_mean"],
                     "start_loss": best["curves"][0][0][1], "curves": best["curves"],
                     "seconds": time.perf_counter() - t0})
        save()
    return rows


def forwards_to(curve, target: float) -> int | None:
    return next((f for f, loss in curve if loss <= target), None)


def slowdown_rows(rows: list[dict], save, progress: bool) -> list[dict]:
    done = {(r["axis"], r["d"], r["r"], r["label"]) for r in rows}
    points = [("r", RANK_D, r) for r in RANKS] + [("d", d, DIM_R) for d in DIMS]
    todo = [(axis, d, r, name, hyper, sampler) for axis, d, r in points for name, hyper, sampler in TWO_POINT
            if (axis, d, r, _label(name, hyper)) not in done]
    bar = progress_bar(todo, desc="synthetic: slowdown", enabled=progress, unit="point")
    for axis, d, r, name, hyper, sampler in bar:
        t0 = time.perf_counter()
        gd = Quadratic(d=d, r=r, seed=0)
        eta = ETA_SCALE / 1.0  # lambda_max = 1
        losses = [float(gd.exact_loss().detach())]
        with torch.no_grad():
            for _ in range(GD_STEPS):
                for p, g in zip([layer.weight for layer in gd.layers], gd.gradient()):
                    p.sub_(g, alpha=eta)
                losses.append(float(gd.exact_loss().detach()))
        target = losses[-1]
        n = hyper.get("n", 1)
        g = gamma(r, n, sampler, d=d)
        cap = math.ceil(CAP * g * GD_STEPS)
        steps = []
        for seed in SEEDS:
            problem = Quadratic(d=d, r=r, seed=0)  # the same start as GD's; the seed draws the directions
            opt = estimators.get(name, problem, lr=eta / g, eps=1e-3, seed=seed, **hyper)
            reached = None
            for t in range(1, cap + 1):
                opt.step(problem)
                if float(problem.exact_loss().detach()) <= target:
                    reached = t
                    break
            steps.append(reached)
        ok = [s for s in steps if s is not None]
        rows.append({"axis": axis, "d": d, "r": r, "label": _label(name, hyper), "estimator": name, "hyper": hyper,
                     "gamma": g, "gd_steps": GD_STEPS, "gd_losses": losses, "target": target, "steps": steps,
                     "cap": cap, "measured": statistics.median(ok) / GD_STEPS if len(ok) == len(steps) else None,
                     "seconds": time.perf_counter() - t0})
        save()
    return rows


def _label(name: str, hyper: dict) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in sorted(hyper.items()))
    return f"{name} ({extra})" if extra else name


def run(out: str | Path, progress: bool = True) -> dict:
    """Runs (or resumes) both parts into DIR/synthetic.json and returns it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "synthetic.json"
    data = read_json(path) if path.exists() else {"equal_forwards": [], "slowdown": []}
    t0 = time.perf_counter()

    def save():
        write_json(path, data)

    torch_threads = torch.get_num_threads()
    equal_forwards(data["equal_forwards"], save, progress)
    slowdown_rows(data["slowdown"], save, progress)
    data["seconds_this_call"] = time.perf_counter() - t0
    data["torch_threads"] = torch_threads
    data["measured"] = {**machine(), "threads": torch_threads, "date": time.strftime("%Y-%m-%d")}
    save()
    return data


# -- the report ---------------------------------------------------------------------------------------------
def _plot_curves(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [p[0] for p in PROBLEMS]
    fig, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 4), squeeze=False)
    axes = axes[0]
    for ax, label in zip(axes, labels):
        for row in (r for r in data["equal_forwards"] if r["problem"] == label):
            c = row["curves"][0]
            ax.plot([f for f, _ in c], [max(v, 1e-12) for _, v in c], lw=1, label=row["estimator"])
        ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("forward passes")
        ax.set_ylabel("loss (seed 0)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _plot_slowdown(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, axis, key in ((a, "r", "r"), (b, "d", "d")):
        rows = [r for r in data["slowdown"] if r["axis"] == axis]
        for label in dict.fromkeys(r["label"] for r in rows):
            mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r[key])
            xs = [r[key] for r in mine if r["measured"] is not None]
            ax.plot(xs, [r["measured"] for r in mine if r["measured"] is not None], "o-", lw=1, label=f"{label}")
            ax.plot([r[key] for r in mine], [r["gamma"] for r in mine], ":", c=ax.lines[-1].get_color(), lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("effective rank r" if axis == "r" else "dimension d")
        ax.set_ylabel("steps to GD's loss / GD's steps")
        ax.set_title(f"d = {RANK_D:,}" if axis == "r" else f"r = {DIM_R}", fontsize=9)
        ax.grid(alpha=0.3)
    a.legend(fontsize=6)
    fig.suptitle("measured slowdown (solid) and predicted gamma(r, n) (dotted)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _slowdown_summary(rows: list[dict]) -> list[str]:
    """Per estimator: measured / gamma along each axis (flat along d is the lemma's prediction)."""
    lines = ["| estimator | measured / gamma over r (d fixed) | over d (r fixed) |", "|---|---|---|"]
    for label in dict.fromkeys(r["label"] for r in rows):
        cells = []
        for axis in ("r", "d"):
            mine = [r for r in rows if r["label"] == label and r["axis"] == axis]
            ratios = [r["measured"] / r["gamma"] for r in mine if r["measured"] is not None]
            missed = len(mine) - len(ratios)
            cells.append((f"{min(ratios):.2f} to {max(ratios):.2f}" if ratios else "none reached")
                         + (f" ({missed} of {len(mine)} points not reached)" if missed and ratios else ""))
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return lines


def report(data: dict, out: str | Path, command: str, measured: dict) -> Path:
    """DIR/summary.md with its two plots."""
    out = Path(out)
    _plot_curves(data, out / "curves.png")
    _plot_slowdown(data, out / "slowdown.png")
    lines = ["# Synthetic suite: estimators on set Hessian spectra", "",
             f"Measured with `{command}` on {measured.get('date')} ({measured.get('machine')}, "
             f"{measured.get('threads')} torch threads, torch {measured.get('torch')}). The objectives and the "
             "protocol are in `zoo/bench/synthetic.py`'s docstring.", "",
             "## Equal forwards", "",
             f"{BUDGET} forward passes per run, {len(SEEDS)} seeds, each estimator's best lr of its grid "
             "(1/gamma(r, 1) x 0.25, 0.5, 1 for the estimators that step along g_hat; 1e-3, 1e-2, 1e-1 for "
             "mezo-adam and zo-sign). Final loss as mean ± std over seeds, relative to the start; forwards to "
             "half of MeZO-SGD's decrease (median over seeds).", "",
             "![loss against forwards](curves.png)", ""]
    for label, _, _ in PROBLEMS:
        rows = [r for r in data["equal_forwards"] if r["problem"] == label]
        if not rows:
            continue
        base = next((r for r in rows if r["estimator"] == "mezo-sgd"), None)
        start = rows[0]["start_loss"]
        target = start - 0.5 * (start - base["final_mean"]) if base else None
        lines += [f"### {label}", "", f"Start loss {start:.4g}; target {target:.4g}." if target else "", "",
                  "| estimator | lr | final / start | forwards to target |", "|---|---:|---:|---:|"]
        ranked = sorted(rows, key=lambda r: r["final_mean"])
        for r in ranked:
            rel = [f / start for f in r["final_loss"]]
            mean = statistics.mean(rel) if all(math.isfinite(x) for x in rel) else math.inf
            std = statistics.stdev(rel) if len(rel) > 1 and math.isfinite(mean) else 0.0
            reach = [forwards_to(c, target) for c in r["curves"]] if target is not None else []
            got = [x for x in reach if x is not None]
            to = f"{statistics.median(got):.0f}" if len(got) == len(reach) and reach else (
                f"not reached ({len(got)}/{len(reach)} seeds)")
            lines.append(f"| {r['estimator']} | {r['lr']:.3g} | {mean:.3g} ± {std:.2g} | {to} |")
        lines.append("")
    lines += ["## Slowdown against the theory", "",
              f"Gradient descent at eta = {ETA_SCALE}/lambda_max for {GD_STEPS} steps sets the target loss; each "
              "two-point estimator runs at eta / gamma(r, n) from the same start and its steps to the target over "
              f"GD's are the measured slowdown (median of {len(SEEDS)} seeds; cap {CAP:g} x gamma x GD's steps). "
              "gamma is (r + n + 1)/n for Gaussian directions (also used for Rademacher, and for the sparse and "
              "subspace variants, whose directions the lemma does not cover) and the sphere formula for the sphere.",
              "", "![slowdown against r and d](slowdown.png)", "",
              *_slowdown_summary(data["slowdown"]), "",
              "| axis | d | r | estimator | predicted gamma | measured | measured / gamma |",
              "|---|---:|---:|---|---:|---:|---:|"]
    for r in sorted(data["slowdown"], key=lambda r: (r["axis"], r["d"], r["r"], r["label"])):
        m = r["measured"]
        measured = "not reached" if m is None else f"{m:.3g}"
        ratio = "" if m is None else f"{m / r['gamma']:.2f}"
        lines.append(f"| {r['axis']} | {r['d']:,} | {r['r']} | {r['label']} | {r['gamma']:.3g} | {measured} | {ratio} |")
    lines.append("")
    path = out / "summary.md"
    write_text(path, "\n".join(lines))
    return path
