"""The claims of HiZOO, MeZO-SVRG and LOZO, and ZO-Bench's ordering, decided from a suite's rows."""

import pytest

from zoo.bench import claims


def row(method, acc, seeds=3, std=0.01, loss=None, dev_losses=None, step_s=1.0, peak=100):
    r = {"method": method, "test_accuracy": (acc, std), "seeds": seeds, "s_per_step": step_s,
         "peak_memory_bytes": peak}
    if loss is not None:
        r["test_loss"] = (loss, 0.01)
    if dev_losses is not None:  # one curve per seed: step 0 is not counted
        r["curves"] = [[{"step": 0, "dev_loss": 9.0}, *({"step": 10 * (i + 1), "dev_loss": v} for i, v in
                                                        enumerate(seed))] for seed in dev_losses]
    return r


def table(*rows):
    return {("m", "t", r["method"]): r for r in rows}


@pytest.mark.parametrize("hizoo,verdict", [
    ([[0.5, 0.4], [0.52, 0.41], [0.49, 0.42]], "| reproduced |"),
    ([[0.8, 0.7], [0.82, 0.71], [0.79, 0.72]], "contradicted"),
    ([[0.6, 0.55], [0.66, 0.5], [0.62, 0.54]], "not reproduced"),
])
def test_hizoo_converges_faster_is_decided_by_the_dev_loss_curves(hizoo, verdict):
    mezo = row("mezo-sgd", 0.7, dev_losses=[[0.62, 0.55], [0.64, 0.52], [0.6, 0.56]])
    (line,) = claims.hizoo_lines(table(mezo, row("hizoo", 0.7, dev_losses=hizoo)))
    assert verdict in line and "m, t" in line


def test_svrg_needs_both_a_lower_loss_and_a_higher_accuracy():
    mezo = row("mezo-sgd", 0.70, loss=0.60)
    (both,) = claims.svrg_lines(table(mezo, row("mezo-svrg", 0.80, loss=0.50)))
    (acc_only,) = claims.svrg_lines(table(mezo, row("mezo-svrg", 0.80, loss=0.60)))
    (worse,) = claims.svrg_lines(table(mezo, row("mezo-svrg", 0.60, loss=0.70)))
    assert both.endswith("| reproduced |") and "not reproduced" in acc_only and "contradicted" in worse


def test_lozo_matches_at_lower_cost_or_not():
    mezo = row("mezo-sgd", 0.70, step_s=2.0)
    (cheaper,) = claims.lozo_lines(table(mezo, row("lozo", 0.705, step_s=1.0)))
    (same_cost,) = claims.lozo_lines(table(mezo, row("lozo", 0.705, step_s=2.0, peak=80)))  # memory: noise
    (lost,) = claims.lozo_lines(table(mezo, row("lozo", 0.50, step_s=1.0)))
    (one_seed,) = claims.lozo_lines(table(row("mezo-sgd", 0.7, seeds=1), row("lozo", 0.7, seeds=1)))
    assert cheaper.endswith("| reproduced |") and "2.00x" in cheaper
    assert "not cheaper" in same_cost and "accuracy lost" in lost and "undecided" in one_seed


def test_zo_bench_ordering_lists_the_family_by_accuracy():
    rows = table(row("mezo-sgd", 0.70), row("zo-sign", 0.75), row("zo-cons", 0.65), row("zo-momentum", 0.72),
                 row("mezo-adam", 0.80), row("lezo", 0.99))
    (line,) = claims.zo_bench_ordering(rows)
    order = line.split("| m, t: ")[1]
    names = ["ZO-Adam", "ZO-SGD-Sign", "ZO-SGD-MMT", "ZO-SGD ", "ZO-SGD-Cons"]
    assert [order.index(n) for n in names] == sorted(order.index(n) for n in names) and "LeZO" not in line


def test_no_line_without_mezo_to_compare_with():
    assert claims.lines(table(row("hizoo", 0.7, dev_losses=[[0.5]]), row("lozo", 0.7))) == []
