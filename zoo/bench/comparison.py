"""What the report compares across estimators: forwards to a target, the area under the dev curve, a
paired comparison with MeZO-SGD over seeds, a ranking with ties, and whether the budget let anything move.

All of it reads the rows of `report.collect`: each method's best (lr, eps) on dev, with one dev-evaluation
history and one test accuracy per seed.

- **Target**: 90% of first-order Adam's dev-loss decrease on that (model, task), from its mean curve
  (the start is every run's dev loss at step 0, the same weights for all methods). A method reaches it
  at the first evaluation whose dev loss is at or below; "not reached" otherwise. A second target at
  50% of the decrease ranks the estimators where no ZO estimator reaches the first.
- **Area**: the mean dev accuracy over the run, the trapezoid under dev accuracy against forward passes
  divided by the forwards spent (higher is better and earlier).
- **Paired**: per seed, the method's test accuracy minus MeZO-SGD's (the same seed draws the same
  training sample); the mean difference, its standard error (sd / sqrt(seeds)), and whether it exceeds
  two standard errors.
- **Ranking** by median forwards to target; two methods tie when their per-seed forwards overlap
  (the lower one's slowest seed is not faster than the other's fastest); methods that do not reach the
  target on every seed come last.
- **Testable**: a (model, task) where MeZO-SGD's dev loss fell, or its dev accuracy rose, by more than
  two standard errors over its seeds. Elsewhere a verdict of "not reproduced" says only that nothing moved, and is printed as
  "not testable at this budget".
"""

from __future__ import annotations

import math
import statistics

FIRST_ORDER = ("sgd", "adam")

TARGET_FRACTION = 0.9
HALF_FRACTION = 0.5  # the second target, for ranking where no ZO estimator reaches the first


def _curve(evals: list[dict]) -> list[tuple[int, float, float]]:
    return [(e["forward_passes"], e["dev_loss"], e["dev_accuracy"]) for e in evals if e.get("dev_loss") is not None]


def target_loss(rows: list[dict], model: str, task: str, fraction: float = TARGET_FRACTION) -> float | None:
    """The dev loss at `fraction` (90%) of first-order Adam's decrease, or None without an Adam row."""
    adam = next((r for r in rows if (r["model"], r["task"], r["method"]) == (model, task, "adam")), None)
    if adam is None or not adam.get("curves"):
        return None
    curves = [_curve(c) for c in adam["curves"]]
    if not all(curves):
        return None
    start = statistics.fmean(c[0][1] for c in curves)
    points = min(len(c) for c in curves)
    best = min(statistics.fmean(c[i][1] for c in curves) for i in range(points))
    if not best < start:
        return None
    return start - fraction * (start - best)


def forwards_to(evals: list[dict], target: float) -> int | None:
    return next((f for f, loss, _ in _curve(evals) if loss <= target), None)


def dev_area(evals: list[dict]) -> float | None:
    c = _curve(evals)
    if len(c) < 2 or c[-1][0] <= c[0][0]:
        return None
    area = sum((f1 - f0) * (a0 + a1) / 2 for (f0, _, a0), (f1, _, a1) in zip(c, c[1:]))
    return area / (c[-1][0] - c[0][0])


def paired(row: dict, base: dict) -> tuple[float, float, int] | None:
    """(mean difference of test accuracy, its standard error, seeds paired) against `base`."""
    a, b = row.get("per_seed", {}), base.get("per_seed", {})
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    return statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs)), len(diffs)


def _beyond_noise(changes: list[float]) -> bool:
    if len(changes) < 2:
        return bool(changes) and changes[0] > 0
    mean, se = statistics.fmean(changes), statistics.stdev(changes) / math.sqrt(len(changes))
    return mean > 2 * se and mean > 0


def testable(rows: list[dict], model: str, task: str) -> bool:
    """Whether MeZO-SGD moved over its budget: its dev loss fell, or its final dev accuracy rose above its
    start, by more than two standard errors over its seeds (a few-shot dev loss can rise while accuracy
    climbs, as a head grows confident)."""
    base = next((r for r in rows if (r["model"], r["task"], r["method"]) == (model, task, "mezo-sgd")), None)
    if base is None or not base.get("curves"):
        return False
    curves = [_curve(e) for e in base["curves"]]
    if not all(len(c) >= 2 for c in curves):
        return False
    loss_drops = [c[0][1] - min(loss for _, loss, _ in c[1:]) for c in curves]
    acc_gains = [c[-1][2] - c[0][2] for c in curves]
    return _beyond_noise(loss_drops) or _beyond_noise(acc_gains)


def flattened(row: dict) -> str:
    """Whether a method's mean dev loss had flattened by the end: its last quarter of evaluations moved it
    by under 10% of its whole decrease."""
    curves = [_curve(c) for c in row.get("curves", [])]
    if not curves or not all(len(c) >= 4 for c in curves):
        return "too few evaluations to tell"
    n = min(len(c) for c in curves)
    mean = [statistics.fmean(c[i][1] for c in curves) for i in range(n)]
    total = mean[0] - min(mean)
    late = mean[(3 * n) // 4] - mean[-1]
    if total <= 0:
        return "did not fall"
    return ("flattened (last quarter: {:.0%} of the decrease)" if late < 0.1 * total else
            "still falling (last quarter: {:.0%} of the decrease)").format(max(late, 0.0) / total)


def ranking(entries: list[tuple[str, list[int | None]]]) -> list[tuple[int, str]]:
    """(rank, method) by median forwards to target, tied where the seeds' forwards overlap; the methods
    that miss the target on some seed are left out (unranked)."""
    reached = [(m, sorted(f)) for m, f in entries if f and all(x is not None for x in f)]
    reached.sort(key=lambda e: statistics.median(e[1]))
    out, rank, prev = [], 0, None
    for i, (m, f) in enumerate(reached):
        if prev is None or prev[-1] < f[0]:  # the previous one's slowest seed beats this one's fastest
            rank = i + 1
        out.append((rank, m))
        prev = f if prev is None or prev[-1] < f[0] else [min(prev[0], f[0]), max(prev[-1], f[-1])]
    return out


def section(rows: list[dict]) -> list[str]:
    """The report's comparison section, one table per (model, task) that has a MeZO-SGD row."""
    pairs = list(dict.fromkeys((r["model"], r["task"]) for r in rows if r.get("curves")))
    if not pairs:
        return []
    lines = ["## Estimators compared", "",
             "Per (model, task): each estimator's best (lr, eps) on dev. Forwards to target: the forward passes "
             f"until the dev loss first reaches {TARGET_FRACTION:.0%} of first-order Adam's decrease (median over "
             f"seeds; \"not reached\" with the seeds that did), and to {HALF_FRACTION:.0%} of it. Area: mean dev "
             "accuracy over the run. Paired: test accuracy minus MeZO-SGD's on the same seeds, ± its standard "
             "error; * where it exceeds two. Rank: by forwards to the first target that some ZO estimator reaches "
             "on every seed, tied where the seeds' forwards overlap. `zoo/bench/comparison.py` has the "
             "definitions.", ""]
    for model, task in pairs:
        mine = [r for r in rows if (r["model"], r["task"]) == (model, task) and r.get("curves")]
        base = next((r for r in mine if r["method"] == "mezo-sgd"), None)
        target, half = target_loss(rows, model, task), target_loss(rows, model, task, HALF_FRACTION)

        def reaching(goal):
            return {r["method"]: [forwards_to(c, goal) for c in r["curves"]] if goal is not None else []
                    for r in mine}

        reach, reach_half = reaching(target), reaching(half)
        zo_reach = any(f and all(x is not None for x in f) for m, f in reach.items() if m not in FIRST_ORDER)
        by = reach if zo_reach else reach_half
        ranks = dict((m, k) for k, m in ranking(list(by.items()))) if target is not None else {}
        lines += [f"### {model}, {task}", ""]
        if target is None:
            lines.append("No first-order Adam row whose dev loss fell: no target.")
        else:
            lines.append(f"Target dev loss {target:.4f} ({TARGET_FRACTION:.0%} of Adam's decrease); "
                         f"{half:.4f} at {HALF_FRACTION:.0%}. Ranked by forwards to "
                         + (f"the {TARGET_FRACTION:.0%} target." if zo_reach else
                            f"the {HALF_FRACTION:.0%} target: no ZO estimator reached {TARGET_FRACTION:.0%} on "
                            "every seed."))
        if base is not None:
            lines.append(f"MeZO-SGD's dev loss by the end of its budget: {flattened(base)}. "
                         + ("Verdicts here are testable: MeZO-SGD's dev loss or accuracy moved beyond two "
                            "standard errors." if testable(rows, model, task) else
                            "**Not testable at this budget**: MeZO-SGD's dev loss and accuracy did not move beyond "
                            "two standard errors."))
        lines += ["", f"| rank | method | test accuracy | forwards to {TARGET_FRACTION:.0%} | forwards to "
                      f"{HALF_FRACTION:.0%} | dev area | vs MeZO-SGD (paired) |", "|---:|---|---|---|---|---:|---|"]
        order = sorted(mine, key=lambda r: (ranks.get(r["method"], 10**6), -r["test_accuracy"][0]))
        def told(seeds):
            got = [f for f in seeds if f is not None]
            return (f"{statistics.median(got):.0f}" if got and len(got) == len(seeds) else
                    f"not reached ({len(got)}/{len(seeds)})")

        for r in order:
            to = "" if target is None else told(reach.get(r["method"], []))
            to_half = "" if half is None else told(reach_half.get(r["method"], []))
            areas = [a for a in (dev_area(c) for c in r["curves"]) if a is not None]
            area = f"{statistics.fmean(areas):.3f}" if areas else ""
            p = paired(r, base) if base is not None and r is not base else None
            vs = "" if p is None else f"{p[0]:+.3f} ± {p[1]:.3f}{' *' if abs(p[0]) > 2 * p[1] else ''}"
            m, s = r["test_accuracy"]
            acc = f"{m:.3f} ± {s:.3f}" if r["seeds"] > 1 else f"{m:.3f}"
            lines.append(f"| {ranks.get(r['method'], '')} | {r['method']} | {acc} | {to} | {to_half} | {area} | {vs} |")
        lines.append("")
    return lines


def mark_untestable(lines: list[str], rows: list[dict]) -> list[str]:
    """Claims lines of a (model, task) where nothing moved: their "not reproduced" verdict becomes
    "not testable at this budget"."""
    untestable = [(m, t) for m, t in dict.fromkeys((r["model"], r["task"]) for r in rows) if not testable(rows, m, t)]
    out = []
    for line in lines:
        cells = line.rstrip().rstrip("|").split(" | ")
        # a verdict on speed stands whatever the training did
        if (len(cells) >= 3 and "not reproduced" in cells[-1] and "speed-up" not in cells[-1]
                and any(f"{m}, {t}:" in cells[-2] for m, t in untestable)):
            cells[-1] = "not testable at this budget (MeZO-SGD's dev loss and accuracy did not move beyond 2 standard errors)"
            line = " | ".join(cells) + " |"
        out.append(line)
    return out
