"""The ZO estimate against the math: unbiasedness and second moments on a quadratic."""

import math

import pytest
import torch

import zoo

D = 12


def quadratic(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(D, D, generator=g, dtype=torch.float64)
    a = q @ q.T / D + torch.eye(D, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    theta = torch.nn.Parameter(torch.randn(D, generator=g, dtype=torch.float64))
    loss = lambda: 0.5 * theta @ a @ theta - b @ theta
    grad = (a @ theta - b).detach()
    return theta, loss, grad


def samples(sampler, n, count):
    theta, loss, grad = quadratic()
    opt = zoo.get("n-spsa", [theta], n=n, sampler=sampler, lr=0.0, eps=1e-3, seed=11, perturbation="inplace")
    est = torch.stack([opt.estimate(loss)[0] for _ in range(count)])
    return est, grad


@pytest.mark.parametrize("sampler", ["gaussian", "rademacher", "sphere"])
@pytest.mark.parametrize("n", [1, 4])
def test_estimate_is_unbiased(sampler, n):
    est, grad = samples(sampler, n, 4000)
    mean, se = est.mean(0), est.std(0) / math.sqrt(len(est))
    z = ((mean - grad) / se).abs()
    assert z.max() < 4.5, f"max |z-score| {z.max():.2f}"
    # and the test can fail: a scaled estimate is caught
    assert (((1.2 * mean - grad) / se).abs().max() > 4.5)


@pytest.mark.parametrize("sampler,n,factor", [
    ("gaussian", 1, lambda d, n: (d + n + 1) / n),
    ("gaussian", 4, lambda d, n: (d + n + 1) / n),
    ("sphere", 1, lambda d, n: (d + n - 1) / n),
    ("sphere", 4, lambda d, n: (d + n - 1) / n),
])
def test_second_moment_matches_theory(sampler, n, factor):
    """E||g_hat||^2 = ((d+n+1)/n)||g||^2 (Gaussian), ((d+n-1)/n)||g||^2 (sphere); MeZO Lemma 2."""
    est, grad = samples(sampler, n, 10000)
    measured = est.square().sum(1).mean().item()
    predicted = factor(D, n) * grad.square().sum().item()
    assert abs(measured / predicted - 1) < 0.05, (measured, predicted)
