"""The linear probe's logistic regression against an independent float64 solver, and its use."""

import numpy as np
import pytest
import torch

from zoo.finetune.probe import fit_logistic


def _data(n=120, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, classes))
    x = rng.normal(size=(n, d))
    y = np.array([rng.choice(classes, p=np.exp(r) / np.exp(r).sum()) for r in x @ w])
    return x, y


def _reference(x, y, classes, l2):
    """The same objective, solved by torch's L-BFGS in float64: mean CE + l2/2 ||W||^2 (bias unpenalised)."""
    xt, yt = torch.tensor(x), torch.tensor(y)
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + 0.5 * l2 * w.square().sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return torch.softmax(xt @ w + b, 1).detach().numpy(), closure().item()


@pytest.mark.parametrize("classes,l2", [(2, 1e-2), (3, 1e-3), (3, 1.0)])
def test_fit_logistic_matches_an_independent_solver(classes, l2):
    x, y = _data(classes=classes)
    w = fit_logistic(x, y, classes, l2)
    z = np.hstack([x, np.ones((len(x), 1))]) @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ref_p, ref_loss = _reference(x, y, classes, l2)
    loss = -np.mean(np.log(p[np.arange(len(y)), y])) + 0.5 * l2 * np.sum(w[:-1] ** 2)
    # the probabilities are unique (the softmax's shift freedom cancels in them)
    assert np.abs(p - ref_p).max() < 1e-4
    assert loss == pytest.approx(ref_loss, rel=1e-6)


def test_stronger_l2_shrinks_the_weights():
    x, y = _data()
    norms = [np.linalg.norm(fit_logistic(x, y, 3, l2)[:-1]) for l2 in (1e-3, 1e-1, 10.0)]
    assert norms[0] > norms[1] > norms[2] > 0
