"""`zoo theory effective-rank` on a tiny model: against the exact Hessian of a small subset, and the CLI's outputs."""

import json

import pytest
import torch

from zoo.finetune.build import prepare
from zoo.tasks import few_shot, user_task
from zoo.theory import HessianOperator
from zoo.theory.measure import measure, select_parameters
from conftest import sentiment_file, tiny_llama, tiny_model_folder, word_tokenizer


def _head_model(tmp_path):
    from transformers import LlamaForSequenceClassification

    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    model = LlamaForSequenceClassification(tiny_llama(dtype=torch.float64).config).double()
    model.config.pad_token_id = 0
    return prepare(model, word_tokenizer(), task, "head", "full"), few_shot(task, 6, 0).train


def test_head_hessian_matches_the_exact_matrix(tmp_path):
    built, train = _head_model(tmp_path)
    r = measure(built, train, subset="head", matvecs=99, lanczos_steps=30, slq_steps=30, slq_probes=4)
    assert r["fitted_head_loss"] < 0.69  # the head was fitted before measuring
    op = HessianOperator(built.model, lambda m, b: torch.nn.functional.cross_entropy(built.scorer(m, b).double(),
                                                                                     b.labels),
                         built.scorer.encode(train), params=list(built.model.score.parameters()))
    exact = torch.stack([op(e) for e in torch.eye(op.dim, dtype=torch.float64)])
    eig = torch.linalg.eigvalsh((exact + exact.T) / 2)
    assert r["dim"] == op.dim == 64
    assert r["trace"] == pytest.approx(eig.sum().item(), rel=1e-6)  # Hutch++ is exact once its sketch spans H
    assert r["lambda_max"] == pytest.approx(eig.max().item(), rel=1e-6)
    assert r["r"] == pytest.approx(r["trace"] / r["lambda_max"])
    assert r["slq"]["lambda_max"] == pytest.approx(eig.max().item(), rel=1e-3)
    assert r["gamma"]["4"] == pytest.approx((r["r"] + 5) / 4)


def test_subsets():
    model = tiny_llama()
    where, params = select_parameters(model, "last-mlp")
    assert where == "model.layers.1.mlp" and sum(p.numel() for p in params) == 3 * 32 * 64
    assert select_parameters(model, "last-block")[0] == "model.layers.1"
    with pytest.raises(ValueError, match="needs --no-prompt"):
        select_parameters(model, "head")


def test_cli_writes_json_and_plot(tmp_path, capsys):
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["theory", "effective-rank", "--model", str(folder), "--task", str(data), "--k", "4", "--matvecs", "9",
                 "--lanczos", "6", "--slq-steps", "5", "--slq-probes", "1", "--json", str(out), "--plot", str(png)]) == 0
    r = json.loads(out.read_text())
    assert r["config"]["mode"] == "prompt" and r["batch"] == 8 and r["total_matvecs"] == 9 + 6 + 5
    assert r["r"] == pytest.approx(r["trace"] / r["lambda_max"])
    assert png.stat().st_size > 1000
    assert main(["theory", "effective-rank", "--over-training"]) == 2 and "r = " in capsys.readouterr().out
    assert main(["theory", "effective-rank", "--model", str(folder), "--task", str(data), "--params", "head"]) == 2


def test_cli_measures_at_a_finetune_runs_weights(tmp_path):
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    run = tmp_path / "run"
    assert main(["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "8",
                 "--batch-size", "4", "--lr", "0.02", "--eps", "0.01", "--out", str(run), "--snapshot-every", "4"]) == 0
    rank = ["--params", "last-block", "--matvecs", "9", "--lanczos", "6", "--slq-steps", "5", "--slq-probes", "1"]
    start, end = tmp_path / "start.json", tmp_path / "end.json"
    assert main(["theory", "effective-rank", "--model", str(folder), "--task", str(data), "--k", "4",
                 *rank, "--json", str(start)]) == 0
    assert main(["theory", "effective-rank", "--run", str(run), *rank, "--json", str(end)]) == 0
    a, b = json.loads(start.read_text()), json.loads(end.read_text())
    assert b["config"]["run_step"] == 8 and a["config"]["run_step"] == 0
    assert a["dim"] == b["dim"] and a["loss"] != b["loss"]  # same batch and subset, trained weights
    assert main(["theory", "effective-rank", "--run", str(tmp_path / "nothing")]) == 2
    # without checkpoint.pt the weights are rebuilt from the run's logged losses: the same measurement
    (run / "checkpoint.pt").rename(tmp_path / "moved.pt")
    replayed = tmp_path / "replayed.json"
    assert main(["theory", "effective-rank", "--run", str(run), *rank, "--json", str(replayed)]) == 0
    c = json.loads(replayed.read_text())
    assert (c["trace"], c["lambda_max"], c["loss"], c["config"]["run_step"]) == (b["trace"], b["lambda_max"], b["loss"], 8)
    (tmp_path / "moved.pt").rename(run / "checkpoint.pt")
    # along the run: the start is the untrained model, the last snapshot the checkpoint's weights
    along, png = tmp_path / "along.json", tmp_path / "along.png"
    assert main(["theory", "effective-rank", "--run", str(run), "--over-training", *rank, "--json", str(along),
                 "--plot", str(png)]) == 0
    points = json.loads(along.read_text())["points"]
    assert [p["step"] for p in points] == [0, 4, 8]
    assert points[0]["trace"] == a["trace"] and points[0]["loss"] == a["loss"]
    assert points[-1]["trace"] == b["trace"] and points[-1]["loss"] == b["loss"]
    assert png.stat().st_size > 1000
    assert main(["theory", "effective-rank", "--over-training"]) == 2


def test_sketch_lambda_max_through_measure_is_exact_once_the_sketch_spans_h(tmp_path):
    """`--lanczos 0`: lambda_max from Hutch++'s sketch, no Lanczos HVP; with 64 sketch columns on a
    64-dimensional Hessian the Ritz value is the top eigenvalue."""
    built, train = _head_model(tmp_path)
    with_lanczos = measure(built, train, subset="head", matvecs=192, lanczos_steps=30, slq_steps=5, slq_probes=1)
    free = measure(built, train, subset="head", matvecs=192, lanczos_steps=0, slq_steps=5, slq_probes=1)
    assert free["lambda_max_from"] == "hutch++ sketch" and with_lanczos["lambda_max_from"] == "lanczos"
    assert free["matvecs"] == 192 < with_lanczos["matvecs"]  # Lanczos stops early once its space is invariant
    assert free["lambda_max"] == pytest.approx(with_lanczos["lambda_max"], rel=1e-6)


def test_measuring_twice_fits_the_same_head_and_measures_the_same_hessian(tmp_path):
    """`measure` refits the head each call; a warm start from the first fit moved the second one
    (by 4e-6 relative in lambda_max on CI), so the fit starts from zero every time."""
    built, train = _head_model(tmp_path)
    first = measure(built, train, subset="head", matvecs=30, lanczos_steps=10, slq_steps=5, slq_probes=1)
    head = built.model.score.weight.detach().clone()
    with torch.no_grad():
        built.model.score.weight.normal_()  # a different starting head must not change the fit
    second = measure(built, train, subset="head", matvecs=30, lanczos_steps=10, slq_steps=5, slq_probes=1)
    assert torch.allclose(built.model.score.weight, head, rtol=0, atol=1e-12)
    assert second["fitted_head_loss"] == pytest.approx(first["fitted_head_loss"], rel=1e-12)
    assert (second["trace"], second["lambda_max"]) == pytest.approx((first["trace"], first["lambda_max"]), rel=1e-10)
