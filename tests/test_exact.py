"""perturbation='exact': bit-identical weights after lr=0 steps; inplace drifts."""

import pytest
import torch

import zoo
from conftest import SMALL, bits_equal, lm_batch, snapshot, tiny_llama


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", zoo.available())
def test_exact_restore_is_bit_identical(name, dtype):
    model = tiny_llama(dtype)
    batch = lm_batch()
    before = snapshot(model)
    opt = zoo.get(name, model, lr=0.0, eps=1e-2, perturbation="exact", seed=3, **SMALL.get(name, {}))
    records = []
    for _ in range(25):
        opt.step(lambda: model(**batch).loss)
        records.append(tuple(opt.last_record))  # forward-grad perturbs nothing: its jvps differ instead
    assert len({v for r in records for v in r}) > 1, "the steps did not perturb anything"
    assert bits_equal(before, snapshot(model))


def test_inplace_drifts_in_bfloat16_where_exact_does_not():
    model = tiny_llama(torch.bfloat16)
    batch = lm_batch()
    before = snapshot(model)
    opt = zoo.get("mezo-sgd", model, lr=0.0, eps=1e-2, perturbation="inplace")
    for _ in range(25):
        opt.step(lambda: model(**batch).loss)
    assert not bits_equal(before, snapshot(model))


def test_exact_and_inplace_agree_in_float64():
    a, b = tiny_llama(torch.float64), tiny_llama(torch.float64)
    batch = lm_batch()
    oa = zoo.get("mezo-sgd", a, lr=1e-3, eps=1e-3, perturbation="exact")
    ob = zoo.get("mezo-sgd", b, lr=1e-3, eps=1e-3, perturbation="inplace")
    for _ in range(5):
        oa.step(lambda: a(**batch).loss)
        ob.step(lambda: b(**batch).loss)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-9, atol=1e-11)


def test_exact_needs_a_module():
    model = tiny_llama()
    with pytest.raises(ValueError, match="nn.Module"):
        zoo.get("mezo-sgd", list(model.parameters()), perturbation="exact")
    # param groups plus module= is accepted
    groups = [{"params": [model.model.embed_tokens.weight], "weight_decay": 0.0},
              {"params": [p for n, p in model.named_parameters() if "embed" not in n]}]
    opt = zoo.get("mezo-sgd", groups, module=model, perturbation="exact", lr=0.0)
    before = snapshot(model)
    opt.step(lambda: model(**lm_batch()).loss)
    assert bits_equal(before, snapshot(model))


def test_exact_perturbs_tied_weights_consistently():
    """The tied embedding/LM head sees the same z in both modules: exact equals inplace in float64."""
    a, b = tiny_llama(torch.float64, tie=True), tiny_llama(torch.float64, tie=True)
    assert a.lm_head.weight is a.model.embed_tokens.weight
    batch = lm_batch()
    la = zoo.get("mezo-sgd", a, lr=0.0, perturbation="exact").estimate(lambda: a(**batch).loss)
    lb = zoo.get("mezo-sgd", b, lr=0.0, perturbation="inplace").estimate(lambda: b(**batch).loss)
    for ga, gb in zip(la, lb):
        torch.testing.assert_close(ga, gb, rtol=1e-7, atol=1e-9)


def test_exact_memory_is_at_most_the_largest_module():
    model = tiny_llama()
    opt = zoo.get("mezo-sgd", model, perturbation="exact")
    opt.step(lambda: model(**lm_batch()).loss)
    own = [sum(p.numel() * p.element_size() for p in m.parameters(recurse=False)) for m in model.modules()]
    assert 0 < opt.perturbation.peak_saved_bytes <= max(own)
    assert opt.perturbation.bound_bytes == max(own)  # nothing here is large enough to stream


@pytest.mark.parametrize("dtype,expected", [(torch.float32, "inplace"), (torch.bfloat16, "exact"), (torch.float16, "exact")])
@pytest.mark.parametrize("name", zoo.available())
def test_the_default_mode_is_exact_for_half_precision_weights(name, dtype, expected):
    model = tiny_llama(dtype)
    batch = lm_batch()
    before = snapshot(model)
    opt = zoo.get(name, model, lr=0.0, eps=1e-3, seed=3, **SMALL.get(name, {}))
    assert opt.perturbation.name == expected
    assert opt.state_dict()["zo"]["perturbation"] == expected
    for _ in range(5):
        opt.step(lambda: model(**batch).loss)
    if expected == "exact":  # at MeZO's eps, in place would have lost bits here (the test above)
        assert bits_equal(before, snapshot(model))


def test_the_default_follows_the_trained_tensors_not_the_model():
    """Float32 adapters on a bfloat16 model (LoRA's case) drift by float32 rounding only: in place is kept."""
    model = tiny_llama(torch.bfloat16)
    for p in model.parameters():
        p.requires_grad_(False)
    model.lm_head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
    assert zoo.get("mezo-sgd", model, lr=0.0).perturbation.name == "inplace"
    model.lm_head.to(torch.bfloat16)
    assert zoo.get("mezo-sgd", model, lr=0.0).perturbation.name == "exact"


def test_half_precision_without_the_module_warns_and_stays_inplace(caplog):
    model = tiny_llama(torch.bfloat16)
    with caplog.at_level("WARNING", logger="zoo"):
        opt = zoo.get("mezo-sgd", list(model.parameters()), lr=0.0)
    assert opt.perturbation.name == "inplace"
    assert "bfloat16 weights perturbed in place drift" in caplog.text and "module=model" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="zoo"):
        assert zoo.get("mezo-sgd", model, lr=0.0, perturbation="inplace").perturbation.name == "inplace"
        assert zoo.get("mezo-sgd", list(tiny_llama().parameters()), lr=0.0).perturbation.name == "inplace"
    assert caplog.text == ""  # asked for, or float32: nothing to warn about
