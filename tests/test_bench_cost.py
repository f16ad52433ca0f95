"""`zoo bench`'s cost section (the `gpu` preset's machinery): step time and memory per method on
random-init configs, checked on the CPU with a tiny config."""

import json

import pytest
import torch

from zoo.bench import cost, load_suite
from zoo.cli import main

TINY = {"model_type": "llama", "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
SPEC = {"config": TINY, "dtype": "float32", "batch": 2, "seq": 8, "rounds": 2, "seed": 0}


def _suite(tmp_path, **cost_over):
    raw = {"name": "cost-test", "models": [], "tasks": [], "estimators": ["mezo-sgd"],
           "cost": {"device": "cpu", "batch": 2, "seq": 8, "rounds": 2, "first_order": ["adam"],
                    "configs": [{"name": "tiny", "config": TINY}], **cost_over}}
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(raw))
    return path


def test_cost_suite_measures_every_method_and_resumes(tmp_path):
    path, out = _suite(tmp_path), tmp_path / "out"
    assert main(["bench", str(path), "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "step_cost.json").read_text())
    rows = data["configs"][0]["rows"]
    assert data["configs"][0]["measured"]["threads"] >= 1  # when and where, for the docs
    assert [r["method"] for r in rows] == ["inference", "mezo-sgd", "adam"]
    for r in rows:
        assert len(r["step_s"]) == 2 and r["median_step_s"] > 0 and r["peak_bytes"] >= r["base_bytes"] > 0
    summary = (out / "summary.md").read_text()
    assert "### tiny: 0.1M parameters, float32" in summary and "| mezo-sgd |" in summary
    assert [r["perturbation"] for r in rows] == [None, "inplace", None]
    assert ", ZO steps perturb inplace;" in summary
    assert (out / "step_cost.png").exists()
    before = (out / "step_cost.json").read_text()
    assert main(["bench", str(path), "--out", str(out), "--quiet"]) == 0
    assert (out / "step_cost.json").read_text() == before  # a measured config is not measured again


def test_side_by_side_timing_steps_every_method_each_round_and_is_added_to_an_earlier_result(tmp_path):
    path, out = _suite(tmp_path), tmp_path / "out"
    assert main(["bench", str(path), "--out", str(out), "--quiet"]) == 0
    before = json.loads((out / "step_cost.json").read_text())["configs"][0]
    assert "side_by_side" not in before  # off unless the suite asks
    path = _suite(tmp_path, side_by_side_rounds=3)
    assert main(["bench", str(path), "--out", str(out), "--quiet"]) == 0
    after = json.loads((out / "step_cost.json").read_text())["configs"][0]
    assert after["rows"] == before["rows"]  # the per-process probes are not measured again
    sbs = after["side_by_side"]
    assert sbs["methods"] == ["inference", "mezo-sgd", "adam"] and sbs["rounds"] == 3
    assert all(len(sbs["step_s"][m]) == 3 and min(sbs["step_s"][m]) > 0 for m in sbs["methods"])
    assert "Side by side, in one process: 3 rounds" in (out / "summary.md").read_text()


def test_side_by_side_rounds_each_start_one_method_later(monkeypatch):
    """So that neither a slow spell nor a trend within a round lands on the same method every time."""
    order = []
    monkeypatch.setattr(cost, "_optimizer", lambda spec, method, model: None)
    monkeypatch.setattr(cost, "_step_fn", lambda method, model, batch, opt: lambda: order.append(method))
    out = cost.probe_side_by_side({**SPEC, "methods": ["a", "b", "c"], "rounds": 4})
    assert order == list("abc" "abc" "bca" "cab" "abc")  # a warm-up step each, then the rounds
    assert {m: len(t) for m, t in out["step_s"].items()} == {"a": 4, "b": 4, "c": 4}


def test_probe_counts_optimizer_state_exactly():
    """Adam keeps two moments the size of the weights; MeZO-SGD keeps nothing; inference nothing."""
    rows = {m: cost.probe({**SPEC, "method": m}) for m in ("inference", "mezo-sgd", "adam", "mezo-adam")}
    nbytes = rows["adam"]["param_bytes"]
    assert rows["adam"]["extra_state_bytes"] == 2 * nbytes
    assert rows["mezo-adam"]["extra_state_bytes"] == 2 * nbytes
    assert rows["mezo-sgd"]["extra_state_bytes"] == 0 and rows["inference"]["extra_state_bytes"] == 0
    assert rows["inference"]["params"] == sum(p.numel() for p in cost.build(SPEC)[0].parameters())


@pytest.mark.parametrize("asked,used", [(None, "exact"), ("inplace", "inplace"), ("exact", "exact")])
def test_probe_uses_and_records_the_perturbation_mode(asked, used):
    """bfloat16 weights get the estimators' half-precision default unless the config pins a mode."""
    row = cost.probe({**SPEC, "dtype": "bfloat16", "method": "mezo-sgd", "perturbation": asked})
    assert row["perturbation"] == used


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, batch_a = cost.build(SPEC)
    b, batch_b = cost.build(SPEC)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(batch_a["input_ids"], batch_b["input_ids"])
    c, _ = cost.build({**SPEC, "seed": 1})
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    half, _ = cost.build({**SPEC, "dtype": "bfloat16"})
    assert next(half.parameters()).dtype == torch.bfloat16


def test_gpu_preset_configs_are_the_sizes_it_claims():
    """Built on the meta device: SmolLM2-135M's 134.5M parameters and a 1B-class Llama."""
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = {}
    for c in load_suite("gpu").cost["configs"]:
        fields = dict(c["config"])
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), **fields))
        sizes[c["name"]] = sum(p.numel() for p in model.parameters())
    assert round(sizes["smollm2-135m"] / 1e5) == 1345
    assert 1.0e9 < sizes["llama-1b"] < 1.5e9


def test_gpu_preset_without_a_gpu_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu", "--out", str(tmp_path / "g"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]
    assert not (tmp_path / "g").exists()  # it fails before writing anything


@pytest.mark.parametrize("over,message", [
    ({"configs": []}, "non-empty list"),
    ({"configs": [{"name": "x", "config": {"hidden_size": 8}}]}, "model_type"),
    ({"configs": [{"name": "x", "dtype": "fp8", "config": TINY}]}, "dtype 'fp8'"),
    ({"first_order": ["lbfgs"]}, "cost.first_order"),
    ({"rounds": 0}, "cost.rounds must be at least 1"),
    ({"side_by_side_rounds": -1}, "cost.side_by_side_rounds must be a whole number"),
    ({"side_by_side_rounds": 2.5}, "cost.side_by_side_rounds must be a whole number"),
    ({"configs": [{"name": "x", "perturbation": "approx", "config": TINY}]}, "perturbation 'approx'"),
])
def test_bad_cost_sections_are_one_line_errors(tmp_path, capsys, over, message):
    assert main(["bench", str(_suite(tmp_path, **over)), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize("asked,used", [(None, "exact"), ("inplace", "inplace")])
def test_memory_probe_runs_the_dtype_and_perturbation_it_is_given(tmp_path, asked, used):
    from zoo.bench import memory
    from conftest import tiny_model_folder

    folder, data = tiny_model_folder(tmp_path)
    spec = {"model": str(folder), "task": str(data), "mode": "prompt", "tuning": "full", "template": None,
            "batch": 4, "k": 4, "seed": 0, "device": "cpu", "dtype": "bfloat16", "perturbation": asked}
    # in fresh processes, as the suite runs it: in pytest's own process other allocations come and go
    row, adam = memory.measure(spec, ["mezo-sgd", "adam"])
    assert row["perturbation"] == used and row["peak_bytes"] >= row["base_bytes"] > 0
    assert adam["perturbation"] is None
