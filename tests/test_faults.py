"""Bad input gets a clear error and loses nothing."""

import logging

import pytest
import torch

import zoo
from conftest import SMALL, bits_equal, lm_batch, snapshot, tiny_llama


class Boom(RuntimeError):
    pass


def failing_closure(model, fail_at, result):
    calls = {"n": 0}

    def closure():
        calls["n"] += 1
        if calls["n"] == fail_at:
            if result == "raise":
                raise Boom("closure failed")
            return torch.tensor(float(result))
        return model(**lm_batch()).loss

    return closure


@pytest.mark.parametrize("perturbation", ["inplace", "exact"])
@pytest.mark.parametrize("fail_at", [1, 2, 4])
@pytest.mark.parametrize("name", zoo.available())
def test_non_finite_loss_skips_and_restores(name, perturbation, fail_at, caplog):
    model = tiny_llama(torch.float64)
    before = snapshot(model)
    opt = zoo.get(name, model, lr=1e-3, perturbation=perturbation, **SMALL.get(name, {}))
    closure = failing_closure(model, min(fail_at, opt.forwards_at(0)), "nan")
    with caplog.at_level(logging.WARNING, logger="zoo"):
        loss = opt.step(closure)
    assert torch.isnan(loss)
    assert opt.zo_state["skipped_steps"] == 1
    assert any("skipped" in r.message for r in caplog.records)
    after = snapshot(model)
    if perturbation == "exact":
        assert bits_equal(before, after)
    else:
        for a, b in zip(before, after):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
    # no rule state moved: Adam's moments, momentum buffers, HiZOO's H (still all ones), SVRG's anchor
    assert all(not ({"exp_avg", "momentum_buffer", "anchor"} & set(s)) for s in opt.state.values())
    assert all(bool((s["hessian"] == 1).all()) for s in opt.state.values() if "hessian" in s)
    assert opt.zo_state["step"] == 1
    # the next step still works
    assert torch.isfinite(opt.step(lambda: model(**lm_batch()).loss))


@pytest.mark.parametrize("value", ["inf", "-inf"])
def test_infinite_loss_skips(value):
    model = tiny_llama()
    opt = zoo.get("mezo-sgd", model, perturbation="exact")
    before = snapshot(model)
    opt.step(failing_closure(model, 2, value))
    assert opt.zo_state["skipped_steps"] == 1 and bits_equal(before, snapshot(model))


@pytest.mark.parametrize("perturbation", ["inplace", "exact"])
@pytest.mark.parametrize("fail_at", [1, 2, 3])
@pytest.mark.parametrize("name", zoo.available())
def test_raising_closure_restores_weights_then_propagates(name, perturbation, fail_at):
    model = tiny_llama(torch.float64)
    before = snapshot(model)
    hyper = {"n": 2} if name == "n-spsa" else SMALL.get(name, {})
    opt = zoo.get(name, model, lr=1e-3, perturbation=perturbation, **hyper)
    if name == "mezo-svrg":
        opt.step(lambda: model(**lm_batch()).loss)  # the anchor step, so that the failing step has anchor queries
        before = snapshot(model)
    counters = dict(opt.zo_state)
    with pytest.raises(Boom):
        opt.step(failing_closure(model, min(fail_at, opt.forwards_at()), "raise"))
    for a, b in zip(before, snapshot(model)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15 if perturbation == "inplace" else 0)
    assert opt.zo_state == counters  # the step did not happen: a rerun of it draws the same directions


def test_exception_inside_a_module_forward_restores_exact_weights():
    model = tiny_llama()
    before = snapshot(model)
    opt = zoo.get("mezo-sgd", model, perturbation="exact")

    def closure():
        out = model.model.embed_tokens(lm_batch()["input_ids"])  # a perturbed module has run
        handle = model.model.layers[0].mlp.register_forward_hook(lambda *a: (_ for _ in ()).throw(Boom("mid-forward")))
        try:
            return model(**lm_batch()).loss + out.sum() * 0
        finally:
            handle.remove()

    with pytest.raises(Boom):
        opt.step(closure)
    assert bits_equal(before, snapshot(model))


def test_non_scalar_loss_is_rejected_and_weights_restored():
    model = tiny_llama()
    before = snapshot(model)
    opt = zoo.get("mezo-sgd", model, perturbation="exact")
    with pytest.raises(ValueError, match="closure.*scalar"):
        opt.step(lambda: model(**lm_batch()).logits)
    assert bits_equal(before, snapshot(model))
    with pytest.raises(ValueError, match="closure"):
        opt.step(None)


@pytest.mark.parametrize("kwargs,arg", [
    ({"eps": 0.0}, "eps"),
    ({"eps": -1e-3}, "eps"),
    ({"eps": float("nan")}, "eps"),
    ({"lr": -1.0}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"n": 0}, "n"),
    ({"n": 1.5}, "n"),
    ({"seed": "x"}, "seed"),
    ({"perturbation": "approx"}, "perturbation"),
    ({"sampler": "cauchy"}, "sampler"),
    ({"backend": "cuda-magic"}, "backend"),
])
def test_bad_hyper_parameters(kwargs, arg):
    model = tiny_llama()
    with pytest.raises(ValueError, match=arg):
        zoo.get("mezo-sgd", model, **kwargs)


@pytest.mark.parametrize("name,kwargs,arg", [
    ("mezo-adam", {"betas": (1.0, 0.9)}, "betas"),
    ("mezo-adam", {"adam_eps": 0.0}, "adam_eps"),
    ("sparse-mezo", {"sparsity": 1.0}, "sparsity"),
    ("lezo", {"active_fraction": 0.0}, "active_fraction"),
    ("subzero", {"rank": 0}, "rank"),
])
def test_bad_variant_hyper_parameters(name, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        zoo.get(name, tiny_llama(), **kwargs)


def test_bad_parameters():
    with pytest.raises(ValueError, match="floating"):
        zoo.get("mezo-sgd", [torch.zeros(3, dtype=torch.long)])
    with pytest.raises(ValueError, match="model_or_params"):
        zoo.get("mezo-sgd", [])
    with pytest.raises(ValueError, match="model_or_params"):
        zoo.get("mezo-sgd", torch.zeros(3))
    with pytest.raises(ValueError, match="lr"):
        zoo.get("mezo-sgd", [{"params": [torch.zeros(3)], "lr": -1}])
