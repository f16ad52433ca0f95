"""Tuning "blocks": only the top K blocks train, and the activations below them are cached."""

import logging

import pytest
import torch

from conftest import sentiment_file, word_tokenizer
from zoo.finetune.activation_cache import CachedBlocksScorer
from zoo.finetune.state_store import forget as forget_states
from zoo.finetune.build import prepare
from zoo.finetune.loop import FinetuneConfig, finetune
from zoo.tasks import few_shot, user_task


def llama(layers=4, tie=True):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=tie)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).eval()


def built_for(tmp_path, blocks=2, cache=True, model=None, **kw):
    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    built = prepare(model or llama(**kw), word_tokenizer(), task, "prompt", "blocks", blocks=blocks,
                    activation_cache=cache)
    return built, task


@pytest.mark.parametrize("tie", [True, False])
def test_only_the_top_blocks_and_the_final_norm_train(tmp_path, tie):
    built, _ = built_for(tmp_path, blocks=2, tie=tie)
    trained = {n for n, p in built.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("model.layers.2.", "model.layers.3.", "model.norm.")) for n in trained)
    assert any(n.startswith("model.layers.2.") for n in trained) and "model.norm.weight" in trained
    assert not built.model.model.embed_tokens.weight.requires_grad and not built.model.lm_head.weight.requires_grad


@pytest.mark.parametrize("blocks", [0, 5, None, True])
def test_bad_block_counts_are_refused(tmp_path, blocks):
    with pytest.raises(ValueError, match="blocks"):
        built_for(tmp_path, blocks=blocks)


def test_cached_scores_equal_the_full_forward_within_float32_rounding(tmp_path):
    built, task = built_for(tmp_path, blocks=2)
    plain, _ = built_for(tmp_path, blocks=2, cache=False)
    examples = task.examples("all")[:12]
    enc = built.scorer.encode(examples)
    with torch.no_grad():
        cached = built.scorer(built.model, enc)
        full = plain.scorer(plain.model, enc)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
    assert built.scorer.computed_rows == len({e.text for e in examples})
    assert not torch.equal(cached, torch.zeros_like(cached))


def test_the_lower_blocks_run_once_per_example_and_the_top_blocks_every_call(tmp_path):
    built, task = built_for(tmp_path, blocks=1)
    calls = {"low": 0, "top": 0}
    built.model.model.layers[0].register_forward_pre_hook(lambda *a: calls.__setitem__("low", calls["low"] + 1))
    built.model.model.layers[3].register_forward_pre_hook(lambda *a: calls.__setitem__("top", calls["top"] + 1))
    enc = built.scorer.encode(task.examples("all")[:4])
    with torch.no_grad():
        for _ in range(3):
            built.scorer(built.model, enc)
    assert calls["low"] == built.scorer.computed_rows <= 4
    assert calls["top"] >= 3


def test_the_cache_empties_when_a_frozen_weight_changes(tmp_path):
    built, task = built_for(tmp_path, blocks=2)
    enc = built.scorer.encode(task.examples("all")[:4])
    with torch.no_grad():
        before = built.scorer(built.model, enc)
        built.model.model.layers[0].mlp.up_proj.weight.mul_(1.5)  # a frozen lower weight, in place
        after = built.scorer(built.model, enc)
        plain, _ = built_for(tmp_path, blocks=2, cache=False, model=built.model)
        full = plain.scorer(built.model, enc)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, full, rtol=1e-5, atol=1e-5)


def test_a_second_model_with_the_same_frozen_weights_reuses_the_states_and_another_does_not(tmp_path):
    first, task = built_for(tmp_path, blocks=2)
    examples = task.examples("all")[:6]
    distinct = len({e.text for e in examples})
    enc = first.scorer.encode(examples)
    with torch.no_grad():
        a = first.scorer(first.model, enc)
        again, _ = built_for(tmp_path, blocks=2)  # a fresh load of the same weights, as a bench worker's next run
        b = again.scorer(again.model, enc)
        other = llama()
        other.model.layers[0].self_attn.q_proj.weight.data.add_(0.1)
        changed, _ = built_for(tmp_path, blocks=2, model=other)
        c = changed.scorer(changed.model, enc)
        plain, _ = built_for(tmp_path, blocks=2, cache=False, model=other)
        full = plain.scorer(other, enc)
    assert first.scorer.computed_rows == distinct and again.scorer.computed_rows == 0 and torch.equal(a, b)
    assert changed.scorer.computed_rows == distinct
    torch.testing.assert_close(c, full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a, c)


def test_an_unsupported_model_falls_back_to_the_full_forward_and_says_why(tmp_path, caplog):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=32, n_layer=3, n_head=4, n_positions=64)).eval()
    with caplog.at_level(logging.WARNING, logger="zoo"):
        built, task = built_for(tmp_path, blocks=1, model=model)
        enc = built.scorer.encode(task.examples("all")[:4])
        with torch.no_grad():
            scores = built.scorer(built.model, enc)
    assert scores.shape == (4, 2) and built.scorer.computed_rows == 0
    assert any("activation cache is off" in r.message and "RoPE" in r.message for r in caplog.records)


def _run(tmp_path, cache, steps=6, estimator="mezo-sgd"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = sentiment_file(tmp_path / "s.tsv")
    task = user_task(path)
    built = prepare(llama(), word_tokenizer(), task, "prompt", "blocks", blocks=2, activation_cache=cache)
    cfg = FinetuneConfig(model="tiny", task=str(path), estimator=estimator, steps=steps, k=8, batch_size=4, lr=1e-2,
                         eps=1e-2, eval_every=3, checkpoint_every=2, tuning="blocks", blocks=2,
                         activation_cache=cache)
    r = finetune(cfg, built, few_shot(task, 8, 0), tmp_path / "run", progress=False)
    return r, built


@pytest.mark.parametrize("estimator", ["mezo-sgd", "adam"])
def test_a_cached_run_keeps_the_trajectory_of_the_uncached_one(tmp_path, estimator):
    cached, a = _run(tmp_path / "cached", True, estimator=estimator)
    plain, b = _run(tmp_path / "plain", False, estimator=estimator)
    assert isinstance(a.scorer, CachedBlocksScorer) and a.scorer.computed_rows > 0 and b.scorer.computed_rows == 0
    # Adam's first steps are about lr * sign(g): a rounding-sized change of a tiny gradient component moves
    # its weight by lr, so its trajectories agree less closely than MeZO's
    rel = 1e-5 if estimator == "mezo-sgd" else 2e-4
    for x, y in zip(cached["history"]["loss"], plain["history"]["loss"]):
        assert x == pytest.approx(y, rel=rel, abs=1e-6)
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=10 * rel, atol=1e-5 if estimator == "mezo-sgd" else 2e-3)
    assert cached["forward_passes"] == plain["forward_passes"]
    # the row counter sees the cached forwards too (it once hooked the model object, which they never call)
    expected = cached["forward_passes"] if estimator == "mezo-sgd" else cached["config"]["steps"]
    assert cached["model_calls"] == plain["model_calls"] == expected


def test_a_cached_run_resumes_bit_exactly(tmp_path, monkeypatch):
    from conftest import bits_equal, stop_at

    straight, a = _run(tmp_path / "a", True)
    (tmp_path / "b").mkdir(exist_ok=True)
    path = sentiment_file(tmp_path / "b" / "s.tsv")
    task = user_task(path)

    def fresh():
        built = prepare(llama(), word_tokenizer(), task, "prompt", "blocks", blocks=2)
        cfg = FinetuneConfig(model="tiny", task=str(path), steps=6, k=8, batch_size=4, lr=1e-2, eps=1e-2,
                             eval_every=3, checkpoint_every=2, tuning="blocks", blocks=2)
        return cfg, built, few_shot(task, 8, 0)

    stop_at(monkeypatch, 3, *fresh(), tmp_path / "b" / "run")
    forget_states()  # a resumed process computes the states again
    cfg, built, splits = fresh()
    resumed = finetune(cfg, built, splits, tmp_path / "b" / "run", progress=False)
    assert resumed["history"]["loss"] == straight["history"]["loss"]
    assert bits_equal(list(a.model.parameters()), list(built.model.parameters()))


def test_config_refuses_blocks_without_tuning_blocks_and_the_reverse():
    with pytest.raises(ValueError, match="blocks"):
        FinetuneConfig(tuning="blocks").validate()
    with pytest.raises(ValueError, match="blocks"):
        FinetuneConfig(tuning="full", blocks=2).validate()
    FinetuneConfig(tuning="blocks", blocks=2).validate()


def test_cli_finetune_with_blocks_and_eval_of_the_run(tmp_path, capsys):
    import json

    from conftest import tiny_model_folder
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    out = tmp_path / "run"
    args = ["--model", str(folder), "--task", str(data), "--k", "4", "--quiet"]
    assert main(["finetune", *args, "--tuning", "blocks", "--blocks", "1", "--steps", "4", "--batch-size", "4",
                 "--lr", "0.01", "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["config"]["blocks"] == 1 and r["config"]["activation_cache"] is True
    (out / "checkpoint.pt").unlink()  # rebuilt from the logged losses
    assert main(["eval", *args, "--run", str(out), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["accuracy"] == r["metrics"]["accuracy"]
    capsys.readouterr()
    assert main(["finetune", *args, "--tuning", "blocks", "--out", str(tmp_path / "o")]) == 2
    assert "--blocks K" in capsys.readouterr().err


def test_the_state_store_keeps_apart_states_computed_with_other_thread_counts():
    """A bench's main process fills the store on all threads, then trains on half of them: states computed
    with another thread count may round otherwise, so a run must not reuse them (zoo/finetune/state_store.py)."""
    from zoo.finetune.state_store import states_for

    frozen = [torch.arange(6.0).reshape(2, 3)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = states_for("blocks:test", frozen)
        one[b"row"] = torch.zeros(1)
        assert states_for("blocks:test", frozen) is one  # the same weights and threads: the same states
        torch.set_num_threads(2)
        assert b"row" not in states_for("blocks:test", frozen)
    finally:
        torch.set_num_threads(threads)
        forget_states()
