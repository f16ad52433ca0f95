"""Test accuracy along a run: scored during it, or rebuilt afterwards by replaying a ZO run's logged losses."""

import json

import pytest

import zoo
from zoo.finetune.loop import finetune
from zoo.finetune.test_curve import add_test_curve, has_test_curve
from test_finetune import _count_calls, _setup


def _run(tmp_path, name, test_curve=False, **cfg):
    cfg, built, splits = _setup(tmp_path / name, **cfg)
    return finetune(cfg, built, splits, tmp_path / name / "run", progress=False, test_curve=test_curve)


def _test_points(result):
    return [(e["step"], e["test_accuracy"], e["test_loss"]) for e in result["history"]["evals"]]


def test_a_test_curve_scores_test_at_every_evaluation_and_changes_no_training(tmp_path):
    plain = _run(tmp_path, "plain")
    cfg, built, splits = _setup(tmp_path / "curve")
    calls = _count_calls(built.model)
    curved = finetune(cfg, built, splits, tmp_path / "curve" / "run", progress=False, test_curve=True)
    assert curved["history"]["step_losses"] == plain["history"]["step_losses"]
    assert curved["metrics"] == plain["metrics"] and not has_test_curve(plain) and has_test_curve(curved)
    points = _test_points(curved)
    assert [s for s, _, _ in points] == [0, 4, 8]
    assert points[-1][1:] == (curved["metrics"]["accuracy"], curved["metrics"]["test_loss"])
    assert len({loss for _, _, loss in points}) == 3  # three different weights were scored
    test_batches = -(-len(splits.test) // 32)
    assert len(calls) == curved["forward_passes"] + 3 + 3 * test_batches  # the final test pass is not run twice
    assert curved["test_curve"]["source"] == "scored during the run"


@pytest.mark.parametrize("estimator", zoo.available())
def test_a_curve_rebuilt_from_the_logged_losses_equals_the_one_scored_during_the_run(tmp_path, estimator):
    during = _run(tmp_path, "during", test_curve=True, estimator=estimator)
    _run(tmp_path, "after", estimator=estimator)
    cfg, fresh, splits = _setup(tmp_path / "after")  # a new process: weights at their start
    rebuilt = add_test_curve(tmp_path / "after" / "run", fresh, splits)
    assert _test_points(rebuilt) == _test_points(during)
    assert json.loads((tmp_path / "after" / "run" / "results.json").read_text()) == rebuilt
    assert rebuilt["test_curve"]["source"] == "replayed from the logged losses"


def test_runs_from_the_same_weights_share_their_step_0_test_pass(tmp_path):
    for seed in (0, 1):
        _run(tmp_path, f"seed{seed}", seed=seed)
    at_start, calls_per_run, results = {}, [], []
    for seed in (0, 1):
        cfg, fresh, splits = _setup(tmp_path / f"seed{seed}", seed=seed)
        calls = _count_calls(fresh.model)
        results.append(add_test_curve(tmp_path / f"seed{seed}" / "run", fresh, splits, at_start=at_start))
        calls_per_run.append(len(calls))
    test_batches = -(-len(splits.test) // 32)
    assert calls_per_run == [2 * test_batches, test_batches]  # steps 0 and 4, then step 4 only
    assert results[0]["history"]["evals"][0]["test_loss"] == results[1]["history"]["evals"][0]["test_loss"]
    assert len(at_start) == 1


def _unchanged_on_error(run, fresh, splits, match):
    before = (run / "results.json").read_bytes()
    with pytest.raises(ValueError, match=match):
        add_test_curve(run, fresh, splits)
    assert (run / "results.json").read_bytes() == before


def test_a_first_order_run_cannot_be_replayed(tmp_path):
    _run(tmp_path, "fo", estimator="adam")
    cfg, fresh, splits = _setup(tmp_path / "fo", estimator="adam")
    _unchanged_on_error(tmp_path / "fo" / "run", fresh, splits, "logs no losses to replay")


def test_a_log_that_does_not_rebuild_the_weights_leaves_the_results_as_they_were(tmp_path):
    _run(tmp_path, "a")
    run = tmp_path / "a" / "run"
    r = json.loads((run / "results.json").read_text())
    r["history"]["step_losses"][5][0] += 1e-3  # after the evaluation at step 4: only the final check sees it
    (run / "results.json").write_text(json.dumps(r))
    cfg, fresh, splits = _setup(tmp_path / "a")
    _unchanged_on_error(run, fresh, splits, "did not rebuild the saved weights")


def test_other_starting_weights_are_refused(tmp_path):
    import torch

    _run(tmp_path, "a")
    cfg, other, splits = _setup(tmp_path / "a")
    with torch.no_grad():
        next(other.model.parameters()).add_(1e-3)
    _unchanged_on_error(tmp_path / "a" / "run", other, splits, "initial weights differ")


def test_cli_finetune_test_curve_matches_the_final_test_score(tmp_path, capsys):
    from conftest import tiny_model_folder
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    common = ["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "4",
              "--batch-size", "4", "--lr", "0.01", "--eval-every", "2"]
    assert main([*common, "--test-curve", "--out", str(tmp_path / "curve")]) == 0
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    curve, plain = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("curve", "plain"))
    assert [e["step"] for e in curve["history"]["evals"]] == [0, 2, 4] and has_test_curve(curve)
    assert not has_test_curve(plain) and curve["metrics"] == plain["metrics"]
    assert curve["history"]["evals"][-1]["test_accuracy"] == curve["metrics"]["accuracy"]
