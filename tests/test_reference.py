"""Every estimator agrees, in float64, with a slow reference that materialises z."""

import pytest
import torch

import zoo
from conftest import SMALL, BlockMLP, regression_data
from reference import Reference


def z_tolerance(opt) -> float:
    """Relative error allowed against the reference's z.

    The torch and cpu backends draw exactly the reference's float32 z. Triton's
    float32 log/cos/sin (numpy's under the interpreter, libdevice on a GPU) are
    within a few ulp of correctly rounded, so z itself is off by up to ~5e-7.
    """
    return 1e-6 if opt.backend.name == "triton" else 1e-9

HYPER = {"lr": 1e-3, "eps": 1e-3, "weight_decay": 0.1}
#: Hyper-parameters of single estimators in these tests.
OWN = {"mezo-adam": {"lr": 1e-4}, "zo-cons": {"weight_decay": 0.0, "lr": 1e-2}, "hizoo": {"hessian_smooth": 0.1}}
#: Where zoo computes part of a step in float32 against the reference's float64: SubZero's bases
#: (a float32 QR); HiZOO's u = z / sqrt(H) (float32 z times
#: the float32 H's rsqrt), which the losses see.
LOOSER = {"subzero": 1e-5, "hizoo": 1e-6}


MODES = [(name, mode) for name in zoo.available() for mode in ("inplace", "exact", "batched")
         if mode != "batched" or zoo.estimators.spec(name).factory.perturbs_weights]


@pytest.mark.parametrize("name,perturbation", MODES, ids=[f"{p}-{n}" for n, p in MODES])
def test_matches_float64_reference(name, perturbation):
    model = BlockMLP()
    x, y = regression_data()
    hyper = {**HYPER, **SMALL.get(name, {}), **zoo.estimators.spec(name).defaults, **OWN.get(name, {})}
    opt = zoo.get(name, model, seed=7, perturbation=perturbation, **hyper)
    ref = Reference(model, name, hyper, seed=7, stream=opt.backend.stream.name)
    theta0 = {k: v.clone() for k, v in ref.theta.items()}
    closure = lambda: torch.nn.functional.mse_loss(model(x), y)
    for _ in range(4):
        opt.step(closure)
        ref.step(x, y)
    got = dict(model.named_parameters())
    moved = max((ref.theta[k] - theta0[k]).abs().max().item() for k in ref.names)
    err = max((got[k].detach() - ref.theta[k]).abs().max().item() for k in ref.names)
    assert moved > 1e-6, "the reference did not move: the test would be vacuous"
    tol = max(LOOSER.get(name, 0.0), z_tolerance(opt))
    assert err <= tol * moved, f"{name}/{perturbation}: max error {err:.3g} vs movement {moved:.3g}"


def test_rademacher_and_n_directions_match_reference():
    model = BlockMLP()
    x, y = regression_data()
    hyper = {**HYPER, "n": 3, "sampler": "rademacher"}
    opt = zoo.get("n-spsa", model, seed=3, **hyper)
    ref = Reference(model, "n-spsa", hyper, seed=3, stream=opt.backend.stream.name)
    theta0 = [v.clone() for v in ref.theta.values()]
    for _ in range(3):
        opt.step(lambda: torch.nn.functional.mse_loss(model(x), y))
        ref.step(x, y)
    got = dict(model.named_parameters())
    moved = max((ref.theta[k] - p).abs().max().item() for k, p in zip(ref.names, theta0))
    err = max((got[k].detach() - ref.theta[k]).abs().max().item() for k in ref.names)
    assert moved > 1e-6 and err <= z_tolerance(opt) * moved
