"""Spectral density by stochastic Lanczos quadrature, and the ranks it gives.

SLQ (Ubaru, Chen, Saad 2017; Ghorbani, Krishnan, Xiao 2019): for each of a few
random unit probes, k Lanczos steps give T_k = V diag(theta) V^T; the probe's
quadrature rule puts weight V[0, i]^2 on node theta_i. Averaged over probes,
sum_i w_i f(theta_i) ~ tr f(H) / d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .spectral import Matvec


@dataclass
class SpectralDensity:
    """Quadrature nodes and weights (weights sum to 1 per probe, averaged)."""

    nodes: torch.Tensor
    weights: torch.Tensor
    dim: int
    matvecs: int

    def trace_of(self, f) -> float:
        """Estimate of tr f(H)."""
        return self.dim * float((self.weights * f(self.nodes)).sum())

    @property
    def lambda_max(self) -> float:
        return float(self.nodes.max())

    def smoothed(self, grid: torch.Tensor, width: float) -> torch.Tensor:
        """A Gaussian-smoothed density on `grid` (integrates to about 1)."""
        diff = grid[:, None] - self.nodes[None, :]
        kernel = torch.exp(-0.5 * (diff / width) ** 2) / (width * math.sqrt(2 * math.pi))
        return kernel @ self.weights

    def ranks(self) -> dict:
        """Effective ranks from the density (all relative to lambda_max unless noted).

        r: tr(H)/lambda_max.  r_plus: tr(H_+)/lambda_max (positive part).
        stable_rank: ||H||_F^2 / lambda_max^2.  participation_ratio: tr(H)^2 / ||H||_F^2.
        entropy_rank: exp(-sum p log p) with p the |eigenvalue| mass.
        """
        lam = self.lambda_max
        tr = self.trace_of(lambda x: x)
        tr_plus = self.trace_of(lambda x: x.clamp(min=0))
        fro2 = self.trace_of(lambda x: x**2)
        mass = self.dim * self.weights * self.nodes.abs()
        p = mass / mass.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        return {
            "r": tr / lam,
            "r_plus": tr_plus / lam,
            "stable_rank": fro2 / lam**2,
            "participation_ratio": tr**2 / fro2,
            "entropy_rank": math.exp(entropy),
        }


def slq(matvec: Matvec, dim: int, steps: int = 30, probes: int = 4, seed: int = 0) -> SpectralDensity:
    """Stochastic Lanczos quadrature with Rademacher start vectors."""
    from .spectral import lanczos

    gen = torch.Generator().manual_seed(seed)
    nodes, weights, used = [], [], 0
    for i in range(probes):
        start = torch.randint(0, 2, (dim,), generator=gen, dtype=torch.float64).mul_(2).sub_(1)
        res = lanczos(matvec, dim, steps, start=start)
        theta, vecs = torch.linalg.eigh(res.tridiagonal())
        nodes.append(theta)
        weights.append(vecs[0] ** 2 / probes)
        used += res.matvecs
    return SpectralDensity(torch.cat(nodes), torch.cat(weights), dim, used)


def trace_probe(loss_fn, perturb, eps: float) -> float:
    """One forward-only sample of tr(H): (L(θ+εz) + L(θ−εz) − 2L(θ)) / ε², E = tr(H) for z ~ N(0, I).

    Args:
        loss_fn: callable() -> float, the loss at the current weights.
        perturb: callable(scale) that adds scale * z to the weights in place.
        eps: the perturbation scale.
    """
    base = loss_fn()
    perturb(eps)
    plus = loss_fn()
    perturb(-2 * eps)
    minus = loss_fn()
    perturb(eps)
    return (plus + minus - 2 * base) / eps**2
