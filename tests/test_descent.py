"""Each estimator decreases a quadratic and a small model's loss."""

import pytest
import torch

import zoo
from conftest import SMALL, lm_batch, tiny_llama

LR = {"mezo-adam": 3e-3}
#: HiZOO's paper-form H grows towards D (d + 2)/2 (its docstring), which at SMALL's smoothing would
#: shrink its steps by ~100x within these few hundred steps; its default smoothing keeps H near 1 here.
#: MeZO-SVRG's anchor steps take anchor_lr_scale x lr, momentum's steps about 1/(1 - momentum) x lr:
#: both scaled back to the stable range of the others' lr.
DESCENT = {"hizoo": {"hessian_smooth": 1e-6}, "mezo-svrg": {"anchor_lr_scale": 1.0}}
LR_SCALE = {"zo-momentum": 0.1, "mezo-svrg": 0.5}  # SVRG: two directions per step, twice the variance


@pytest.mark.parametrize("name", zoo.available())
def test_decreases_quadratic(name):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(16, 16, generator=g)
    holder = torch.nn.Module()  # forward-grad reads the weights through their module
    holder.w = torch.nn.Parameter(0.1 * torch.randn(16, 16, generator=g))
    loss = lambda: ((holder.w - target) ** 2).sum()  # Hessian 2I: ZO-SGD is stable for lr < ~1/(d+2)
    lr = {"mezo-adam": 0.01, "zo-sign": 0.01}.get(name, 0.002) * LR_SCALE.get(name, 1.0)
    opt = zoo.get(name, holder, lr=lr, eps=1e-3, seed=1, **{**SMALL.get(name, {}), **DESCENT.get(name, {})})
    start = loss().item()
    for _ in range(300):
        opt.step(loss)
    # Sparse MeZO trains only weights below its threshold; they leave the mask as they grow.
    assert loss().item() < (0.99 if name == "sparse-mezo" else 0.8) * start


@pytest.mark.parametrize("name", zoo.available())
def test_decreases_tiny_llama_loss(name):
    model = tiny_llama()
    batch = lm_batch()
    closure = lambda: model(**batch).loss
    opt = zoo.get(name, model, lr=LR.get(name, 2e-3) * LR_SCALE.get(name, 1.0), eps=1e-3, seed=0, **{**SMALL.get(name, {}), **DESCENT.get(name, {})})
    start = closure().item()
    for _ in range(60):
        opt.step(closure)
    assert closure().item() < start - 0.01
