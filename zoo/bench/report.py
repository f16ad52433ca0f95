"""Aggregates a suite's run folders into DIR/summary.md, DIR/summary.json and PNG plots."""

from __future__ import annotations

import platform
import statistics
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import torch

from ..estimators import available
from ..provenance import describe as describe_machines
from ..provenance import machine
from . import claims, comparison
from .cost_report import cost_section, has_side_by_side, paired_ratio, paired_ratios, side_by_side_for
from .remaining import describe, describe_spent, remaining
from .suite import Suite, model_label, model_title, task_label
from ..files import read_json, save_figure, write_json, write_text


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _fmt(m: float, s: float, n: int) -> str:
    return f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"


def _step_seconds(done: list) -> float:
    """Median seconds of one training step (evaluations excluded) over the given runs.

    The callers pass every run of a method, each grid point and seed: lr and eps
    do not change what a step computes, and one run's median moves by 2x when
    another job shares the cores for a while. Runs recorded before steps were
    timed alone fall back to wall time over steps, evals included.
    """
    per_run = [r.get("median_step_s") or r["wall_time_s"] / r["config"]["steps"] for _, r in done]
    return statistics.median(per_run)


def collect(suite: Suite, root: Path) -> list[dict]:
    """One row per (model, task, method): the best dev configuration's test metrics over seeds."""
    from .runner import check_forward_count, not_counted

    runs = defaultdict(lambda: defaultdict(list))  # (model, task, estimator) -> (lr, eps) -> [(spec, result)]
    for spec in suite.runs():
        path = spec.folder(root) / "results.json"
        if path.exists():
            key = (model_title(spec.model), spec.task, spec.estimator)
            runs[key][(spec.lr, spec.eps)].append((spec, read_json(path)))
    rows = []
    for (model, task, est), configs in runs.items():
        best = max(configs, key=lambda c: statistics.fmean(r["metrics"]["dev_accuracy"] for _, r in configs[c]))
        done = configs[best]
        acc = [r["metrics"]["accuracy"] for _, r in done]
        per_seed = {spec.seed: r["metrics"]["accuracy"] for spec, r in done}
        test_loss = [r["metrics"].get("test_loss") for _, r in done]
        fwd = [r["forward_passes"] for _, r in done]
        step_s = _step_seconds([run for c in configs.values() for run in c])
        rows.append({
            "model": model, "task": task, "method": est, "lr": best[0], "eps": best[1] or None,
            "seeds": len(done), "test_accuracy": _mean_std(acc), "per_seed": per_seed, "forward_passes": fwd[0],
            **({"test_loss": _mean_std(test_loss)} if None not in test_loss else {}),
            "backward_passes": done[0][1].get("backward_passes", 0),
            "s_per_step": step_s,
            "s_per_forward": step_s / done[0][0].forwards_per_step,
            "timed_runs": sum(len(c) for c in configs.values()),
            **_lowest_peak([r for c in configs.values() for _, r in c]),
            "extra_state_bytes": done[0][1].get("extra_state_bytes"),
            "forward_count_ok": all(check_forward_count(s, r) is None for s, r in done),
            "forward_count_seen": not any(not_counted(r) for _, r in done),
            "curves": [r["history"]["evals"] for _, r in done],
        })
    for model in suite.models:
        for task in suite.tasks:
            for kind in suite.baselines:
                found = sorted((root / "runs" / model_label(model) / task_label(task) / kind).glob("*/results.json"))
                if not found:
                    continue
                res = [read_json(p) for p in found]
                rows.append({
                    "model": model_title(model), "task": task, "method": kind,
                    "seeds": len(res), "test_accuracy": _mean_std([r["metrics"]["accuracy"] for r in res]),
                    "forward_passes": 0, **_lowest_peak(res),
                })
    return rows


def _lowest_peak(results: list[dict]) -> dict:
    """The lowest peak among runs doing the same work (a method's every lr, eps and seed).

    Runs share a process, and memory an earlier run freed but the process still held (glibc's heap) can
    only add to a later run's RSS peak, by up to GBs before zoo handed it back at each reset, so the lowest
    is the closest to a run's own. `peak_spread_bytes` is how far the highest was above it.
    """
    peaks = [r["peak_memory_bytes"] for r in results]
    lowest = results[peaks.index(min(peaks))]
    return {"peak_memory_bytes": min(peaks), "peak_spread_bytes": max(peaks) - min(peaks),
            "peak_per_run": lowest.get("peak_memory_scope") == "run"}


def has_curve(row: dict, metric: str) -> bool:
    """Whether every seed of a table row recorded `metric` at each of its evaluations."""
    return bool(row.get("curves")) and all(c and all(metric in e for e in c) for c in row["curves"])


def _plot(rows: list[dict], path: Path, metric: str = "dev_accuracy") -> None:
    """`metric` ("dev_accuracy" or "test_accuracy") against forward passes, one panel per (model, task),
    over the rows that recorded it at every evaluation; nothing is written when none did."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for r in rows:
        if has_curve(r, metric):
            groups[(r["model"], r["task"])].append(r)
    path.unlink(missing_ok=True)  # a plot left from an earlier report would show curves no longer in the table
    if not groups:
        return
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, ((model, task), rs) in zip(axes[0], groups.items()):
        for r in rs:
            curves = r["curves"]
            n = min(len(c) for c in curves)
            x = [curves[0][i]["forward_passes"] for i in range(n)]
            ys = [[c[i][metric] for c in curves] for i in range(n)]
            mean = [statistics.fmean(y) for y in ys]
            std = [statistics.stdev(y) if len(y) > 1 else 0.0 for y in ys]
            line, = ax.plot(x, mean, label=f"{r['method']} (lr {r['lr']:g})")
            ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=line.get_color(), alpha=0.15)
        ax.set_title(f"{task} — {model}", fontsize=9)
        ax.set_xlabel("forward passes (first-order: steps)")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _plot_cost(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows if r.get("s_per_forward")]
    if not rs:
        return
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(rs)), 3.6))
    ax.bar(range(len(rs)), [1000 * r["s_per_forward"] for r in rs])
    ax.set_xticks(range(len(rs)), [f"{r['method']}\n{r['task']}" for r in rs], rotation=60, fontsize=7)
    ax.set_ylabel("ms per forward pass (median training step / forwards per step)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _gradient_rows(root: Path) -> tuple[dict, list[dict], bool] | None:
    """(meta, rows, partial): the finished section, else the rows saved before an interruption."""
    for name, partial in (("gradient_quality.json", False), ("gradient_quality.partial.json", True)):
        path = root / name
        if path.exists():
            d = read_json(path)
            if d["rows"]:
                return d["meta"], d["rows"], partial
    return None


def equal_budget_mse(row: dict, budget: int) -> float:
    """Relative MSE of the mean of budget/f independent draws of an estimator costing f forwards.

    E‖mean − g‖² = ‖Eĝ − g‖² + E‖ĝ − Eĝ‖² · f/budget: averaging shrinks the variance, never the
    bias. The squared bias is the row's relative MSE minus its relative variance (clipped at 0,
    since both are estimated from the same draws). NaN for a row without a variance.
    """
    var = row.get("relative_variance")
    if var is None:
        return float("nan")
    return max(row["relative_mse"] - var, 0.0) + var * row["forwards"] / budget


def _gradient_section(root: Path) -> list[str]:
    found = _gradient_rows(root)
    if found is None:
        return []
    meta, rows, partial = found
    _plot_gradient(rows, root / "gradient_quality.png")
    lines = ["## Gradient quality", ""]
    if partial:
        lines += [f"**Partial**: the {len(rows)} rows finished so far; `zoo bench` goes on from the next row.", ""]
    budget = max(r["forwards"] for r in rows)
    lines += [f"One batch of {meta['batch']} training examples of {meta['task']} on {meta['model']['model']} "
              f"({rows[0]['dim']} trainable parameters), eps {meta['eps']:g}; {rows[0]['samples']} estimates per "
              "row, each against the true gradient (one backward). The last column compares the rows at equal "
              f"forward passes: the relative MSE of the mean of {budget}/f independent estimates of a row that "
              f"costs f forwards, {budget} forwards in all (bias² + variance·f/{budget}, from the two columns "
              "before it).", "",
              "| estimator | forwards | cosine with ∇L | relative MSE ‖ĝ−∇L‖²/‖∇L‖² | relative variance "
              f"| relative MSE at {budget} forwards |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        # 3 significant digits, not 4 decimals: on a real model the cosine is about 1/sqrt(d), e.g. 9e-5
        at_budget = equal_budget_mse(r, budget)
        lines.append(f"| {r['label']} | {r['forwards']} | {r['cosine']:.3g} ± {r['cosine_std']:.2g} "
                     f"| {r['relative_mse']:.4g} | {r.get('relative_variance', float('nan')):.4g} "
                     f"| {at_budget:.4g} |".replace("| nan ", "| "))
    return lines + ["", "![gradient quality](gradient_quality.png)", ""]


def _memory_section(root: Path) -> list[str]:
    path = root / "memory.json"
    if not path.exists():
        return []
    d = read_json(path)
    meta, rows = d["meta"], d["rows"]
    inf = next(r for r in rows if r["method"] == "inference")
    mib = 1 / 2**20
    work_inf = max(inf["peak_bytes"] - inf["base_bytes"], 1)
    repeats = meta.get("repeats", 1)
    each = (f"Each method runs two steps in {repeats} fresh processes, and the table shows the medians"
            if repeats > 1 else "Each method runs two steps in a fresh process")
    lines = ["## Memory against inference", "",
             f"{model_title(meta['model'])}, one batch of {meta['batch']} "
             f"{meta['task']} examples, {rows[0]['measure']}. {each}, after "
             "the model is loaded and its weights read in (`zoo/bench/memory.py`); *loaded* is the memory "
             "before them, *working* is peak − loaded.", "",
             "| method | loaded MiB | peak MiB | peak / inference | working MiB | working / inference's |"
             + (" peaks of the runs MiB |" if repeats > 1 else ""),
             "|---|---|---|---|---|---|" + ("---|" if repeats > 1 else "")]
    for r in rows:
        work = r["peak_bytes"] - r["base_bytes"]
        runs = (" " + ", ".join(f"{p * mib:.0f}" for p in r["peak_bytes_runs"]) + " |") if repeats > 1 else ""
        lines.append(f"| {r['method']} | {r['base_bytes'] * mib:.0f} | {r['peak_bytes'] * mib:.0f} "
                     f"| {r['peak_bytes'] / inf['peak_bytes']:.3f} | {work * mib:.1f} | {work / work_inf:.2f} |{runs}")
    return lines + [""]


def _verdict(diff: float, se: float) -> str:
    if diff > 2 * se:
        return "reproduced"
    if diff < -2 * se:
        return "**contradicted** (the opposite, beyond 2 standard errors)"
    return "not reproduced (within 2 standard errors)"


def _lezo_speed_up(root: Path, model: str, lezo: dict, mezo: dict) -> tuple[float, str]:
    """MeZO-SGD's step time over LeZO's, and how it was timed.

    Side by side in one process where the suite's cost section timed this model's config so
    (`cost.probe_side_by_side`): the runs' own step times come from processes hours apart, and
    runs of identical work measured here differ 2.5x in step time with the machine's load. The
    ceiling is MeZO-SGD's step over two forwards: LeZO still runs both forwards, so it can only
    save perturbation work.
    """
    sbs = side_by_side_for(root, model.split(" (")[0])
    if sbs is None or not {"lezo", "mezo-sgd", "inference"} <= set(sbs["methods"]):
        return (mezo["s_per_step"] / lezo["s_per_step"],
                "(medians of the runs, each timed in its own process: carries the machine's load)")
    each = paired_ratios(sbs, "mezo-sgd", "lezo")
    ceiling = paired_ratio(sbs, "mezo-sgd", "inference")
    return statistics.median(each), (
        f"(side by side in one process on the random-init config, batch {sbs['batch']} x {sbs['seq']}, median of "
        f"{sbs['rounds']} rounds, range {min(each):.2f}-{max(each):.2f}; the most it could be, MeZO-SGD's step "
        f"over two forwards: {ceiling:.2f}x)")


def _claims_section(rows: list[dict], root: Path) -> list[str]:
    """The variants' published claims, each with the numbers measured here and a verdict."""
    import math

    by = {(r["model"], r["task"], r["method"]): r for r in rows}
    lines = []
    for (model, task, method), r in by.items():
        base = by.get((model, task, "mezo-sgd"))
        if base is None or method not in ("sparse-mezo", "lezo"):
            continue
        (m1, s1), (m0, s0) = r["test_accuracy"], base["test_accuracy"]
        # one seed has no spread: the difference then has no standard error and decides nothing
        known = min(r["seeds"], base["seeds"]) >= 2
        diff, se = m1 - m0, math.sqrt(s1 ** 2 / r["seeds"] + s0 ** 2 / base["seeds"])
        pm = f"± {se:.3f}" if known else f"± ? ({min(r['seeds'], base['seeds'])} seed)"
        undecided = "undecided (needs 2+ seeds of each)"
        if method == "sparse-mezo":
            # e.g. a zero-initialised head: MagnitudeMask perturbs it densely, so the run is MeZO's, bit for bit
            same = (r["lr"], r["eps"], r["curves"], r["test_accuracy"]) == (
                base["lr"], base["eps"], base["curves"], base["test_accuracy"])
            verdict = ("not tested: the same runs as MeZO's, bit for bit (no trained tensor is sparsified here)"
                       if same else _verdict(diff, se) if known else undecided)
            lines.append(f"| Sparse MeZO beats MeZO at equal forward passes (arXiv 2402.15751: +9 points on RTE) "
                         f"| {model}, {task}: {m1:.3f} vs {m0:.3f}, difference {diff:+.3f} {pm} | {verdict} |")
        else:
            speed, timed = _lezo_speed_up(root, model, r, base)
            matched = abs(diff) <= 2 * se or diff > 0
            if speed < 3:  # decided by the timing alone, whatever the accuracy
                verdict = "not reproduced (speed-up below 3x)"
            elif not known:
                verdict = undecided
            else:
                verdict = "reproduced" if matched else "not reproduced (accuracy lost)"
            lines.append(f"| LeZO's per-step speed-up at matching accuracy (arXiv 2410.09823: over 3x) "
                         f"| {model}, {task}: {speed:.2f}x per step {timed}, accuracy {m1:.3f} vs {m0:.3f} "
                         f"({diff:+.3f} {pm}) | {verdict} |")
    lines += claims.lines(by)
    gq = _gradient_rows(root)
    if gq is not None:
        g = {r["label"]: r for r in gq[1]}
        base = g.get("mezo-sgd")
        for label, r in g.items():
            if r["estimator"] != "subzero" or base is None or "relative_variance" not in r:
                continue
            ratio = r["relative_variance"] / base["relative_variance"]
            # Each draw's squared error is about d*|g|^2 times a chi-square(1) variable (relative variance
            # 2), so the log of a mean over N draws has standard error about sqrt(2/N).
            se = math.sqrt(2 / r["samples"] + 2 / base["samples"])
            lines.append(f"| SubZero's estimate has lower variance than MeZO's (arXiv 2410.08989) "
                         f"| {label}: relative variance {r['relative_variance']:.4g} vs {base['relative_variance']:.4g} "
                         f"({ratio:.3f}x; log ratio {math.log(ratio):+.2f} ± {se:.2f}), cosine {r['cosine']:.3g} vs "
                         f"{base['cosine']:.3g}, {r['samples']} draws | {_verdict(-math.log(ratio), se)} |")
    if not lines:
        return []
    return ["## Published claims, checked", "",
            "Differences are mean over seeds ± the standard error of the difference; a claim on accuracy counts "
            "as reproduced when the difference exceeds two standard errors in its favour.", "",
            "| claim | measured here | verdict |", "|---|---|---|", *lines, ""]


def _plot_gradient(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [("n-spsa n=", "n (2n forwards)"), ("sparse-mezo s=", "sparsity"), ("subzero r=", "rank")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (prefix, xlabel) in zip(axes, families):
        rs = [r for r in rows if r["label"].startswith(prefix)]
        if rs:
            x = [float(r["label"][len(prefix):]) for r in rs]
            ax.errorbar(x, [r["cosine"] for r in rs], yerr=[r["cosine_std"] for r in rs], fmt="o-")
        base = next((r for r in rows if r["label"] == "mezo-sgd"), None)
        if base:
            ax.axhline(base["cosine"], ls="--", c="gray", label="mezo-sgd (2 forwards)")
            ax.legend(fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("cosine(ĝ, ∇L)")
        ax.set_title(prefix.split()[0], fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def streams_line(results: list[dict]) -> str:
    """Which noise stream drew the ZO runs' directions, for the table's header.

    The same seed draws other directions on each stream (`zoo.perturb.backend`), so a
    reader rerunning a row needs it; first-order runs and baselines draw none.
    """
    counts = Counter(r.get("noise_stream", "not recorded") for r in results
                     if r.get("config", {}).get("estimator") in available())
    if not counts:
        return "Noise streams: no finished ZO runs."
    parts = [f"{name} ({n} run{'' if n == 1 else 's'})" for name, n in counts.most_common()]
    note = (" A run whose stream is not recorded finished before results recorded it (zoo commit ee0a1d0, "
            "2026-11-30); zoo drew from torch-generator before 2026-11-24 and from philox since, where its C kernel "
            "builds, and a run resumed across that change may have drawn from both."
            if "not recorded" in counts else "")
    return f"Noise streams of the ZO runs: {', '.join(parts)}.{note}"


def write_report(suite: Suite, root: str | Path, command: str) -> Path:
    """Writes DIR/summary.md, DIR/summary.json, DIR/curves.png and DIR/cost.png; returns summary.md."""
    root = Path(root)
    rows = collect(suite, root)
    specs = suite.runs()
    finished = sum((spec.folder(root) / "results.json").exists() for spec in specs)
    results = [read_json(p) for p in sorted((root / "runs").rglob("results.json"))]
    measured = [r.get("measured") for r in results]
    _plot(rows, root / "curves.png")
    _plot(rows, root / "test_curves.png", "test_accuracy")
    _plot_cost(rows, root / "cost.png")
    mib = 1 / 2**20
    lines = [
        f"# Benchmark suite `{suite.name}`",
        "",
        f"Command: `{command}`. Report written {date.today()} on {platform.machine()}, torch {torch.__version__}.",
        f"Runs measured on: {describe_machines(measured)}.",
        streams_line(results),
    ]
    if specs:
        left = remaining(specs, root)
        lines += [
            f"Budget: {_budgets(suite)} per ZO run; k={suite.k}, batch {suite.batch_size}, "
            f"seeds {suite.seeds}. Each estimator's (lr, eps) is the best mean dev accuracy of its grid "
            f"({_grids(suite)}); the test accuracy is that configuration's, mean ± std over seeds.",
            f"Runs finished: {finished} of {len(specs)}"
            + (". " + describe_spent(left) if finished == len(specs)
               else " (**partial**: rows average the seeds that have finished). " + describe(left)),
            "",
            "| model | task | method | lr | eps | test accuracy | forwards | backwards | s/step | ms/forward "
            "| peak MiB | extra state MiB | forward count |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            acc = _fmt(*r["test_accuracy"], r["seeds"])
            lr = f"{r['lr']:g}" if r.get("lr") is not None else ""
            eps = f"{r['eps']:g}" if r.get("eps") else ""
            sps = f"{r['s_per_step']:.3f}" if r.get("s_per_step") else ""
            spf = f"{1000 * r['s_per_forward']:.1f}" if r.get("s_per_forward") else ""
            extra = f"{r['extra_state_bytes'] * mib:.2f}" if r.get("extra_state_bytes") is not None else ""
            check = ("" if "forward_count_ok" not in r else "**MISMATCH**" if not r["forward_count_ok"] else
                     "matches" if r.get("forward_count_seen", True) else "not counted ‡")
            lines.append(f"| {r['model']} | {r['task']} | {r['method']} | {lr} | {eps} | {acc} | {r['forward_passes']} "
                         f"| {r.get('backward_passes', 0)} | {sps} | {spf} | {r['peak_memory_bytes'] * mib:.0f}"
                         f"{'' if r.get('peak_per_run', True) else ' †'} | {extra} "
                         f"| {check} |")
        lines += ["", "s/step is the median over every finished run of the method, each lr, eps and seed (a step's "
                  "work does not depend on them), of each run's median training step (evaluations excluded; runs "
                  "recorded before steps were timed alone show wall time / steps); ms/forward is s/step over the "
                  "method's forwards per step. "
                  + _head_only_note(suite)
                  + ("Runs are timed hours apart on a machine whose load varies, so compare methods' speeds by "
                     "the side-by-side table under *Step time and memory*. " if has_side_by_side(root) else "")
                  + "Peak MiB is a whole run's peak RSS on the CPU (`torch.cuda.max_memory_allocated` on a GPU), "
                  "loading and evaluation included: the lowest among the method's finished runs (each lr, eps "
                  "and seed). Runs share a process, and memory that earlier runs freed but the process still "
                  "held can only add to a run's RSS peak, so each figure is an upper bound (zoo hands that memory "
                  "back before each run since 2026-12-01; earlier runs carry it); the runs of one method here "
                  "spread by up to "
                  f"{max((r.get('peak_spread_bytes', 0) for r in rows), default=0) * mib:.0f} MiB. Compare "
                  "methods under *Memory against inference*, medians of fresh processes on one batch."
                  + (" ‡ Top-block runs on cached activations recorded before the row counter was fixed (2026-12-04): "
                     "the counter hooked the model object, which the cached scorer never calls (it runs the top "
                     "blocks and the LM head directly), so these runs counted no model rows; their forwards are "
                     "in their logged losses. The counter now hooks the LM head (tests/test_activation_cache.py)."
                     if any(not r.get("forward_count_seen", True) for r in rows) else "")
                  + (" † The process's peak since it started, which can be an earlier run's in the same process: "
                     "this run was recorded before zoo reset the peak at the start of each run."
                     if any(not r.get("peak_per_run", True) for r in rows) else ""), "",
                  *_curves_lines(suite, rows), "![cost per forward pass](cost.png)", ""]
    else:
        lines.append("")
    lines += comparison.section(rows)
    lines += _gradient_section(root)
    lines += _memory_section(root)
    lines += comparison.mark_untestable(_claims_section(rows, root), rows)
    lines += cost_section(root)
    lines += _synthetic_section(suite, root, command)
    summary = root / "summary.md"
    write_text(summary, "\n".join(lines))
    write_json(root / "summary.json", [{k: v for k, v in r.items() if k != "curves"} for r in rows], indent=1)
    return summary


def _synthetic_section(suite: Suite, root: Path, command: str) -> list[str]:
    """The synthetic suite's report (zoo/bench/synthetic.py) as this report's last section, its plots
    copied beside this summary as synthetic_<plot>.png."""
    import shutil

    from . import synthetic

    path = root / "synthetic" / "synthetic.json"
    if not suite.synthetic or not path.exists():
        return []
    data = read_json(path)
    measured = data.get("measured") or {**machine(), "threads": data.get("torch_threads"), "date": date.today().isoformat()}
    text = synthetic.report(data, root / "synthetic", command, measured).read_text()
    for png in sorted((root / "synthetic").glob("*.png")):
        shutil.copyfile(png, root / f"synthetic_{png.name}")
        text = text.replace(f"]({png.name})", f"](synthetic_{png.name})")
    # one level down: the synthetic suite's title becomes a section of this report
    return ["#" + line if line.startswith("#") else line for line in text.splitlines()] + [""]


def _curves_lines(suite, rows: list[dict]) -> list[str]:
    """The accuracy-against-forward-passes plots and what they hold."""
    curved = [r for r in rows if r.get("curves")]
    with_test = [r for r in curved if has_curve(r, "test_accuracy")]
    lines = []
    if with_test:
        def named(rs):
            return ", ".join(f"{r['method']} ({r['task']}, {r['model']})" for r in rs)

        without = [r for r in curved if r not in with_test]
        first_order = [r for r in without if r["method"] not in available()]
        pending = [r for r in without if r["method"] in available()]
        lines += ["Test accuracy at each dev evaluation, mean ± std over seeds (the band), for the table's "
                  "configurations. Runs finished before the suite scored it during the run have it rebuilt "
                  "afterwards: replaying a ZO run's logged losses gives its weights at each evaluation bit for bit "
                  "(zoo/finetune/test_curve.py). "
                  + (f"First-order runs log no losses to replay, so these rows, finished before, keep their final "
                     f"point only (the table): {named(first_order)}. " if first_order else "")
                  + (f"Not rebuilt yet (the next `zoo bench` over this folder does it): {named(pending)}."
                     if pending else ""), "",
                  "![test accuracy against forward passes](test_curves.png)", ""]
    elif suite.test_curves and curved:
        lines += ["Test-accuracy curves: none of the table's rows has them yet (scored during a run, or rebuilt "
                  "from a ZO run's logged losses when `zoo bench` passes over the finished run).", ""]
    return lines + ["Dev accuracy (the split that picks each configuration) at each evaluation:", "",
                    "![dev accuracy against forward passes](curves.png)", ""]


def _budgets(suite) -> str:
    """The suite's forward-pass budget, and each model entry's own where it differs."""
    own = [f"{model_title(m)}: {suite.budget_for(m)}" for m in suite.models
           if suite.budget_for(m) != suite.forward_budget]
    if own and len(own) == len(suite.models):  # the suite's own budget applies to no model
        return "forward passes " + "; ".join(own)
    return f"{suite.forward_budget} forward passes" + (f" ({'; '.join(own)})" if own else "")


def _grids(suite) -> str:
    """Each model's (lr, eps) grid for the ZO estimators, and the estimators' own where a suite sets them."""
    def values(xs):
        return "{" + ", ".join(f"{x:g}" for x in xs) + "}"

    parts = []
    for m in suite.models:
        grid = suite.grid_for(m)
        parts.append(f"{model_title(m)}: lr {values(grid['lr'])} x eps {values(grid['eps'])}")
    parts += [f"{name}: " + ", ".join(f"{k} {values(v)}" for k, v in g.items())
              for name, g in suite.estimator_grid.items()]
    return "; ".join(parts)


def _head_only_note(suite) -> str:
    """Says which rows time a head alone: their encoder's passes happen once per example, outside the steps."""
    titles = [model_title(m) for m in suite.models if m.get("mode") == "head" and m.get("tuning") == "head"]
    if not titles:
        return ""
    return (f"The {', '.join(titles)} rows train a head on a frozen encoder: each example is pooled by the encoder "
            "once and cached (zoo/finetune/feature_cache.py, since 2026-12-01), so their s/step and ms/forward time "
            "the head alone. ")


def publish(root: str | Path, doc: str | Path) -> Path:
    """Copies DIR/summary.md to `doc` (e.g. docs/benchmarks.md) with its plots beside it, renamed
    `<doc stem>_<plot>.png` so that several suites can be published in one folder."""
    import shutil

    root, doc = Path(root), Path(doc)
    text = (root / "summary.md").read_text()
    doc.parent.mkdir(parents=True, exist_ok=True)
    for png in sorted(root.glob("*.png")):
        target = f"{doc.stem}_{png.name}"
        shutil.copyfile(png, doc.parent / target)
        text = text.replace(f"]({png.name})", f"]({target})")
    write_text(doc, text)
    return doc
