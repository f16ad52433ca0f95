"""The synthetic suite's objectives and runs (zoo/bench/synthetic.py), at a size CI affords."""

import math

import pytest
import torch

import zoo
from zoo.bench import synthetic


@pytest.mark.parametrize("d,r", [(400, 1), (400, 7), (400, 400), (10_000, 37)])
def test_the_spectrum_has_the_effective_rank_asked_for(d, r):
    h = synthetic.spectrum(d, r)
    assert h.max() == 1 and float(h.sum()) / float(h.max()) == r
    per = d // synthetic.LAYERS
    assert all(h[i * per:(i + 1) * per].sum() > 0 for i in range(synthetic.LAYERS)) or r < synthetic.LAYERS


@pytest.mark.parametrize("r", [0, 401, 2.5, True])
def test_a_bad_rank_is_refused(r):
    with pytest.raises(ValueError, match="^r:"):
        synthetic.spectrum(400, r)


def test_the_quadratic_is_half_h_theta_squared_and_its_hessian_is_h():
    q = synthetic.Quadratic(d=400, r=9, seed=3)
    theta = q.theta().detach().double()
    h = synthetic.spectrum(400, 9).double()
    assert float(q.exact_loss()) == pytest.approx(float(0.5 * (h * theta * theta).sum()), rel=1e-6)
    g = torch.cat([x.reshape(-1) for x in q.gradient()]).double()
    torch.testing.assert_close(g, h * theta, rtol=1e-5, atol=1e-6)


def test_the_noise_floor_changes_evaluations_but_not_the_exact_loss():
    q = synthetic.Quadratic(d=400, r=9, noise=1e-2)
    a, b = float(q()), float(q())
    assert a != b and abs(a - float(q.exact_loss())) < 0.1


def test_the_logistic_loss_starts_at_log_2_and_its_hessian_at_0_is_h_over_4():
    p = synthetic.Logistic(d=400, r=8, samples=4096)
    assert float(p.exact_loss()) == pytest.approx(math.log(2), rel=1e-6)
    cov = (p.x.T @ p.x / p.x.shape[0]).diagonal() / 4
    h = synthetic.spectrum(400, 8) / 4
    assert torch.allclose(cov, h, atol=0.02)


@pytest.mark.parametrize("name", zoo.available())
def test_every_estimator_runs_on_the_objectives_and_spends_the_budget(name):
    for problem in (synthetic.Quadratic(d=400, r=9), synthetic.Logistic(d=400, r=9, samples=64)):
        curve = synthetic._run(problem, name, 1e-3, 24, seed=0)
        assert curve[0][0] == 0 and 0 < curve[-1][0] <= 24 and all(math.isfinite(v) for _, v in curve)


def test_mezo_reaches_gradient_descents_loss_within_a_few_gamma_on_a_quadratic(monkeypatch):
    """The slowdown part at one small point: measured/gamma near 1.4 (= 2 ln 2 for eta = 0.5/lambda_max)."""
    for name, value in (("TWO_POINT", [("mezo-sgd", {}, "gaussian")]), ("SEEDS", (0, 1, 2)), ("RANKS", (3, 9)),
                        ("RANK_D", 400), ("DIMS", (400, 4000)), ("DIM_R", 9)):
        monkeypatch.setattr(synthetic, name, value)
    rows = []
    synthetic.slowdown_rows(rows, lambda: None, progress=False)
    assert len(rows) == 4
    for row in rows:
        assert row["gamma"] == (row["r"] + 2) and row["measured"] is not None
        assert 0.7 < row["measured"] / row["gamma"] < 3.0, row


def test_the_cli_refuses_only_and_jobs_for_the_synthetic_suite(tmp_path, capsys):
    from zoo.cli import main

    assert main(["bench", "synthetic", "--out", str(tmp_path), "--jobs", "2"]) == 2
    assert "synthetic suite takes neither" in capsys.readouterr().err


def test_a_small_suite_runs_resumes_and_reports(tmp_path, monkeypatch):
    from zoo.provenance import machine

    for name, value in (("PROBLEMS", [("quadratic d=400 r=9", synthetic.Quadratic, {"d": 400, "r": 9})]),
                        ("BUDGET", 20), ("SEEDS", (0,)), ("TWO_POINT", [("mezo-sgd", {}, "gaussian")]),
                        ("RANKS", (3,)), ("RANK_D", 400), ("DIMS", (400,)), ("DIM_R", 3)):
        monkeypatch.setattr(synthetic, name, value)
    data = synthetic.run(tmp_path, progress=False)
    assert len(data["equal_forwards"]) == len(zoo.available()) and len(data["slowdown"]) == 2
    again = synthetic.run(tmp_path, progress=False)  # resumed: nothing is run twice
    assert len(again["equal_forwards"]) == len(zoo.available())
    text = synthetic.report(again, tmp_path, "zoo bench synthetic --out X", machine()).read_text()
    assert "| mezo-sgd |" in text and "measured / gamma" in text
    assert (tmp_path / "curves.png").stat().st_size > 1000 and (tmp_path / "slowdown.png").stat().st_size > 1000


def test_a_suite_with_synthetic_true_runs_it_and_its_report_carries_it(tmp_path, monkeypatch):
    import json

    from zoo.bench import load_suite, run_suite, write_report
    from zoo.bench.suite import PRESETS_DIR

    for name, value in (("PROBLEMS", [("quadratic d=400 r=9", synthetic.Quadratic, {"d": 400, "r": 9})]),
                        ("BUDGET", 20), ("SEEDS", (0,)), ("TWO_POINT", [("mezo-sgd", {}, "gaussian")]),
                        ("RANKS", (3,)), ("RANK_D", 400), ("DIMS", (400,)), ("DIM_R", 3)):
        monkeypatch.setattr(synthetic, name, value)
    raw = json.loads((PRESETS_DIR / "smoke.json").read_text())
    raw.update(estimators=["mezo-sgd"], seeds=[0], baselines=[], gradient={}, memory={}, synthetic=True)
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(raw))
    suite = load_suite(str(path))
    run_suite(suite, tmp_path / "out", progress=False)
    text = write_report(suite, tmp_path / "out", "zoo bench X").read_text()
    assert "## Synthetic suite" in text and "| mezo-sgd |" in text.split("## Synthetic suite")[1]
    assert "](synthetic_curves.png)" in text and (tmp_path / "out" / "synthetic_curves.png").exists()
    raw["synthetic"] = "yes"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="synthetic must be true or false"):
        load_suite(str(path))
