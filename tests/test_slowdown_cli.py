"""`zoo theory slowdown` on a tiny model: SGD's target, n-SPSA's steps to it, and the predicted gamma."""

import json

import pytest
import torch

from zoo.finetune.build import prepare
from zoo.tasks import few_shot, user_task
from zoo.theory.experiment import measure_slowdown
from conftest import sentiment_file, tiny_llama, tiny_model_folder, word_tokenizer


def test_more_directions_reach_sgds_loss_in_fewer_steps(tmp_path):
    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    built = prepare(tiny_llama(), word_tokenizer(), task, "prompt", "full")
    train = few_shot(task, 8, 0).train
    before = [p.detach().clone() for p in built.model.parameters()]
    r = measure_slowdown(built, train, subset="last-block", ns=(1, 16), sgd_steps=5, seeds=(0, 1, 2), matvecs=30,
                         eta_scale=0.5)
    assert r["sgd"][-1] < r["sgd"][0] and r["target_loss"] == r["sgd"][-1]
    assert r["eta_sgd"] == 0.5 / r["lambda_max"]
    one, sixteen = r["rows"]
    assert r["r_used"] == (r["r"] if r["r"] > 0 else r["r_plus"]) > 0
    assert one["gamma"] == (r["r_used"] + 2) / 1 and sixteen["gamma"] == (r["r_used"] + 17) / 16
    assert sixteen["reached"] == "3/3" and sixteen["measured"] is not None
    assert one["measured"] is None or sixteen["measured"] < one["measured"]
    # the experiment puts the weights back where it found them
    assert all(torch.equal(a, b) for a, b in zip(before, built.model.parameters()))
    with pytest.raises(ValueError, match="lower --eta-scale"):  # here SGD at 1/lambda_max overshoots
        measure_slowdown(built, train, subset="last-mlp", ns=(1,), sgd_steps=5, seeds=(0,), matvecs=30)
    assert all(torch.equal(a, b) for a, b in zip(before, built.model.parameters()))


def test_cli_writes_json_and_plot(tmp_path, capsys):
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    assert main(["theory", "slowdown", "--model", str(folder), "--task", str(data), "--k", "4", "--n", "1", "4",
                 "--sgd-steps", "3", "--seeds", "0", "--matvecs", "12", "--params", "last-block",
                 "--eta-scale", "0.5", "--json", str(out), "--plot", str(png)]) == 0
    r = json.loads(out.read_text())
    assert [row["n"] for row in r["rows"]] == [1, 4] and png.read_bytes()[:4] == b"\x89PNG"
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "predicted" in line and "n=4" in line
