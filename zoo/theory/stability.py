"""The mean-square stability edge of ZO-SGD on a quadratic.

For L = 1/2 theta^T H theta and the noise-free n-SPSA estimate with Gaussian z,
E[g_hat g_hat^T] = (1 + 1/n) H S H + (1/n) tr(H S H) I with S = theta theta^T
(Malladi et al. 2023, Lemma 2). In H's eigenbasis the diagonal second moments
s_i = E[theta_i^2] then evolve linearly:

    s_i' = (1 - 2 eta l_i + eta^2 (1 + 1/n) l_i^2) s_i + (eta^2 / n) sum_j l_j^2 s_j.

ZO-SGD is mean-square stable iff the spectral radius of that map is < 1; the
edge is the largest such eta. For H = l I in d dimensions it is
2 n / (l (d + n + 1)) = 2 / (l gamma) with r = d, against SGD's 2 / l.
"""

from __future__ import annotations

import torch


def _radius(eta: float, lam: torch.Tensor, mult: torch.Tensor, n: int) -> float:
    a = 1 - 2 * eta * lam + eta**2 * (1 + 1 / n) * lam**2
    m = torch.diag(a) + (eta**2 / n) * torch.outer(torch.ones_like(lam), mult * lam**2)
    return torch.linalg.eigvals(m).abs().max().item()


def zo_stability_edge(eigenvalues, n: int = 1, multiplicities=None, tol: float = 1e-10) -> float:
    """Largest learning rate at which ZO-SGD (Gaussian n-SPSA) is mean-square stable.

    Args:
        eigenvalues: distinct eigenvalues of H (or SLQ nodes), all > 0.
        n: directions per step.
        multiplicities: how many eigenvalues each entry stands for (default 1;
            for an SLQ density pass dim * weights).
        tol: relative bisection tolerance.
    """
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    if lam.numel() == 0 or not bool((lam > 0).all()):
        raise ValueError("eigenvalues: need at least one, all > 0 (the edge is for a positive definite H)")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: must be an integer >= 1, got {n!r}")
    mult = torch.ones_like(lam) if multiplicities is None else torch.as_tensor(multiplicities, dtype=torch.float64)
    lo, hi = 0.0, 2.0 / lam.max().item()  # never above SGD's edge
    if _radius(hi, lam, mult, n) < 1:
        return hi
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _radius(mid, lam, mult, n) < 1 else (lo, mid)
    return lo
