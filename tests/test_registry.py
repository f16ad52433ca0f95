"""The registry: names, aliases, errors, user registrations, declared costs."""

import pytest
import torch

import zoo
from zoo.estimators import ZOOptimizer
from conftest import SMALL, lm_batch, tiny_llama

EXPECTED = {"mezo-sgd", "n-spsa", "mezo-adam", "sparse-mezo", "lezo", "subzero"}


def test_available_is_sorted_and_complete():
    names = zoo.available()
    assert names == sorted(names)
    assert EXPECTED <= set(names)


@pytest.mark.parametrize("name", zoo.available())
def test_every_estimator_is_an_optimizer_with_docs(name):
    opt = zoo.get(name, tiny_llama(), **SMALL.get(name, {}))
    assert isinstance(opt, torch.optim.Optimizer) and isinstance(opt, ZOOptimizer)
    assert "arXiv" in type(opt).__doc__
    assert zoo.estimators.spec(name).paper


@pytest.mark.parametrize("name", zoo.available())
def test_declared_forward_passes_equal_closure_calls(name):
    model = tiny_llama()
    hyper = SMALL.get(name, {})
    opt = zoo.get(name, model, **hyper)
    spec = zoo.estimators.spec(name)
    runs = []
    model.register_forward_pre_hook(lambda *_: runs.append(1))
    for t in range(4):  # MeZO-SVRG alternates its cost: every step is checked
        calls, before = [], len(runs)
        declared = opt.forwards_at()
        opt.step(lambda: calls.append(1) or model(**lm_batch()).loss)
        assert len(calls) == len(runs) - before == declared == spec.forwards(t, **{**spec.defaults, **hyper})
    assert opt.zo_state["forward_passes"] == spec.forwards_for(4, **{**spec.defaults, **hyper}) == len(runs)
    assert spec.forwards_per_step(**{**spec.defaults, **hyper}) == zoo.get(name, model, **hyper).forwards_per_step


def test_aliases_and_normalisation():
    model = tiny_llama()
    assert isinstance(zoo.get("mezo", model), zoo.estimators.MeZOSGD)
    assert isinstance(zoo.get("MeZO_Adam", model), zoo.estimators.MeZOAdam)
    assert zoo.get("n-spsa", model).n == 4


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(ValueError) as err:
        zoo.get("mezo-sdg", tiny_llama())
    msg = str(err.value)
    assert "'mezo-sgd'" in msg and "Did you mean" in msg
    for name in zoo.available():
        assert name in msg


def test_user_registration():
    class Mine(zoo.estimators.MeZOSGD):
        """My estimator (arXiv 0000.00000)."""

    zoo.register("my-mezo", Mine, description="test", defaults={"lr": 0.5}, overwrite=True)
    try:
        opt = zoo.get("my-mezo", tiny_llama())
        assert isinstance(opt, Mine) and opt.param_groups[0]["lr"] == 0.5
        with pytest.raises(ValueError, match="already registered"):
            zoo.register("my-mezo", Mine, description="again")
    finally:
        from zoo.estimators import registry

        registry._REGISTRY.pop("my-mezo")
    with pytest.raises(ValueError, match="kebab-case"):
        zoo.register("My_Estimator", Mine, description="bad")
