"""The report's comparison of estimators (zoo/bench/comparison.py), on made-up rows whose answers are known."""

import pytest

from zoo.bench import comparison as c


def evals(losses, accs=None, step=100):
    accs = accs or [0.5] * len(losses)
    return [{"step": i, "forward_passes": i * step, "dev_loss": l, "dev_accuracy": a}
            for i, (l, a) in enumerate(zip(losses, accs))]


def row(method, curves, per_seed, model="m", task="t"):
    accs = list(per_seed.values())
    mean = sum(accs) / len(accs)
    sd = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
    return {"model": model, "task": task, "method": method, "curves": curves, "per_seed": per_seed,
            "test_accuracy": (mean, sd), "seeds": len(accs)}


def test_the_target_is_ninety_percent_of_adams_mean_decrease():
    rows = [row("adam", [evals([1.0, 0.5, 0.6]), evals([1.0, 0.7, 0.4])], {0: 0.8, 1: 0.8})]
    # mean curve 1.0, 0.6, 0.5: decrease 0.5, target 1.0 - 0.45
    assert c.target_loss(rows, "m", "t") == pytest.approx(0.55)
    assert c.target_loss([row("adam", [evals([1.0, 1.2])], {0: 0.5})], "m", "t") is None  # it rose
    assert c.target_loss(rows, "m", "other") is None


def test_forwards_to_target_and_the_area():
    e = evals([1.0, 0.8, 0.5, 0.4], [0.5, 0.6, 0.7, 0.9])
    assert c.forwards_to(e, 0.55) == 200 and c.forwards_to(e, 0.1) is None
    assert c.dev_area(e) == pytest.approx(((0.55 + 0.65 + 0.8) * 100) / 300)


def test_the_paired_difference_and_its_standard_error():
    a, b = row("x", [], {0: 0.80, 1: 0.84, 2: 0.82}), row("mezo-sgd", [], {0: 0.78, 1: 0.80, 2: 0.81})
    mean, se, n = c.paired(a, b)
    diffs = [0.02, 0.04, 0.01]
    m = sum(diffs) / 3
    assert n == 3 and mean == pytest.approx(m)
    assert se == pytest.approx((sum((d - m) ** 2 for d in diffs) / 2) ** 0.5 / 3 ** 0.5)
    assert c.paired(row("x", [], {0: 0.8}), b) is None  # one seed: no error to give


def test_ranking_ties_overlapping_seeds_and_leaves_out_misses():
    ranks = dict((m, k) for k, m in c.ranking([("a", [100, 120]), ("b", [110, 200]), ("c", [300, 310]),
                                               ("d", [100, None])]))
    assert ranks == {"a": 1, "b": 1, "c": 3}


def test_testable_needs_mezos_dev_loss_to_fall_beyond_two_standard_errors():
    moved = [row("mezo-sgd", [evals([1.0, 0.8]), evals([1.0, 0.79]), evals([1.0, 0.81])], {0: .5, 1: .5, 2: .5})]
    still = [row("mezo-sgd", [evals([1.0, 0.99]), evals([1.0, 1.02]), evals([1.0, 1.0])], {0: .5, 1: .5, 2: .5})]
    assert c.testable(moved, "m", "t") and not c.testable(still, "m", "t")
    line = "| Sparse MeZO beats MeZO | m, t: 0.5 vs 0.5 | not reproduced (within 2 standard errors) |"
    assert "not testable at this budget" in c.mark_untestable([line], still)[0]
    assert c.mark_untestable([line], moved) == [line]


def test_flattened_reads_the_last_quarter():
    assert c.flattened(row("m", [evals([1.0, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])], {0: 1})).startswith("flattened")
    assert c.flattened(row("m", [evals([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])], {0: 1})).startswith("still")


def test_a_verdict_on_speed_stands_where_nothing_moved_and_accuracy_alone_makes_a_row_testable():
    still = [row("mezo-sgd", [evals([1.0, 0.99]), evals([1.0, 1.02]), evals([1.0, 1.0])], {0: .5, 1: .5, 2: .5})]
    speed = "| LeZO's speed-up | m, t: 1.07x per step | not reproduced (speed-up below 3x) |"
    assert c.mark_untestable([speed], still) == [speed]
    climbing = [row("mezo-sgd", [evals([0.69, 0.9], [0.5, 0.62]), evals([0.69, 0.95], [0.5, 0.6]),
                                 evals([0.69, 1.0], [0.5, 0.65])], {0: .6, 1: .6, 2: .6})]
    assert c.testable(climbing, "m", "t")  # a head growing confident: dev loss up, accuracy up


def test_the_ranking_falls_back_to_half_of_adams_decrease_where_no_zo_estimator_reaches_ninety_percent():
    # Adam falls 1.0 -> 0.5; the ZO methods reach 0.75 (50%) at different forwards but never 0.55 (90%)
    rows = [row("adam", [evals([1.0, 0.5]), evals([1.0, 0.5])], {0: 0.9, 1: 0.9}),
            row("mezo-sgd", [evals([1.0, 0.9, 0.7]), evals([1.0, 0.8, 0.7])], {0: 0.6, 1: 0.6}),
            row("lezo", [evals([1.0, 0.7, 0.7]), evals([1.0, 0.7, 0.7])], {0: 0.6, 1: 0.6})]
    text = "\n".join(c.section(rows))
    assert "Ranked by forwards to the 50% target: no ZO estimator reached 90%" in text
    lines = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| ") and " | " in line}
    # Adam reaches 50% at 100 forwards too: tied with LeZO; MeZO-SGD, at 200 on both seeds, comes third
    assert lines["adam"].startswith("| 1 |") and lines["lezo"].startswith("| 1 |")
    assert lines["mezo-sgd"].startswith("| 3 |")
    assert "not reached (0/2)" in lines["lezo"]
