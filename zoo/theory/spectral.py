"""Matrix-free spectral estimates of a symmetric operator given by its matvec.

- lanczos: k steps with full reorthogonalisation; the largest Ritz value is
  lambda_max (largest algebraic, so negative curvature does not win).
- hutchinson: tr(A) ~ mean of v^T A v over Rademacher v (Hutchinson 1989),
  with its standard error.
- hutch_plus_plus: Hutch++ (Meyer, Musco, Musco, Woodruff, SOSA 2021): the top
  of the spectrum exactly through a sketch Q = orth(A S), Hutchinson on the
  deflated rest: tr(A) = tr(Q^T A Q) + tr((I - QQ^T) A (I - QQ^T)).
  The products A Q it needs for tr(Q^T A Q) also give the Rayleigh-Ritz values of
  A on span(A S), one step of randomized subspace iteration (Halko, Martinsson,
  Tropp 2011, section 4.5): their largest is a lower bound on lambda_max that
  costs no further matvec.

Everything runs in float64 on vectors of length `dim`, with a private
torch.Generator seeded by `seed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]


def _rademacher_bits(dim: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """Rademacher probes as 0/1 bytes (1/8 of a float64 block), expanded one column at a time.

    torch's randint stream does not depend on the dtype, so these are the draws a float64
    `randint(0, 2, (dim, count))` would give: estimates match those of a dense implementation."""
    return torch.randint(0, 2, (dim, count), generator=gen, dtype=torch.int8)


def _column(bits: torch.Tensor, i: int) -> torch.Tensor:
    return bits[:, i].to(torch.float64).mul_(2).sub_(1)


@dataclass
class TraceEstimate:
    """tr(A) with its standard error; `ritz_max` is Hutch++'s free lambda_max estimate (None otherwise)."""

    trace: float
    stderr: float
    matvecs: int
    ritz_max: float | None = None


@dataclass
class LanczosResult:
    alphas: torch.Tensor
    betas: torch.Tensor
    ritz_values: torch.Tensor
    matvecs: int

    @property
    def lambda_max(self) -> float:
        return self.ritz_values.max().item()

    def tridiagonal(self) -> torch.Tensor:
        """T_k, the Lanczos tridiagonal matrix."""
        return torch.diag(self.alphas) + torch.diag(self.betas, 1) + torch.diag(self.betas, -1)


def lanczos(matvec: Matvec, dim: int, steps: int, seed: int = 0, start: torch.Tensor | None = None) -> LanczosResult:
    """k-step Lanczos with full reorthogonalisation.

    Returns the tridiagonal coefficients and Ritz values (eigenvalues of T_k).
    """
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    steps = min(steps, dim)
    gen = torch.Generator().manual_seed(seed)
    q = start.to(torch.float64).clone() if start is not None else torch.randn(dim, generator=gen, dtype=torch.float64)
    q /= q.norm()
    basis = torch.zeros(dim, steps, dtype=torch.float64)
    alphas, betas = [], []
    beta, q_prev = 0.0, torch.zeros(dim, dtype=torch.float64)
    for k in range(steps):
        basis[:, k] = q
        w = matvec(q).to(torch.float64) - beta * q_prev
        alpha = torch.dot(w, q).item()
        w -= alpha * q
        # full reorthogonalisation, twice: keeps Ritz values free of ghost copies
        for _ in range(2):
            w -= basis[:, : k + 1] @ (basis[:, : k + 1].T @ w)
        alphas.append(alpha)
        beta = w.norm().item()
        if k == steps - 1 or beta < 1e-12:
            break
        betas.append(beta)
        q_prev, q = q, w / beta
    a = torch.tensor(alphas, dtype=torch.float64)
    b = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
    result = LanczosResult(a, b, torch.empty(0), len(alphas))
    result.ritz_values = torch.linalg.eigvalsh(result.tridiagonal())
    return result


def hutchinson(matvec: Matvec, dim: int, num_matvecs: int, seed: int = 0) -> TraceEstimate:
    """Hutchinson's estimator with Rademacher probes and its standard error."""
    if num_matvecs < 2:
        raise ValueError(f"num_matvecs: Hutchinson needs >= 2 probes for an error bar, got {num_matvecs}")
    gen = torch.Generator().manual_seed(seed)
    probes = _rademacher_bits(dim, num_matvecs, gen)
    samples = torch.tensor([float(v @ matvec(v).to(torch.float64))
                            for v in (_column(probes, j) for j in range(num_matvecs))], dtype=torch.float64)
    return TraceEstimate(samples.mean().item(), (samples.std() / math.sqrt(num_matvecs)).item(), num_matvecs)


def hutch_plus_plus(matvec: Matvec, dim: int, num_matvecs: int, seed: int = 0) -> TraceEstimate:
    """Hutch++: a third of the matvecs sketch, a third project, a third probe the rest.

    The standard error is that of the Hutchinson part (the sketch part is exact). Only the
    sketch A S and its orthonormal basis Q are held as dense dim x k float64 blocks; the probes
    are bytes and the products with Q and the residual probes are reduced as they come.
    """
    if num_matvecs < 6:
        raise ValueError(f"num_matvecs: Hutch++ needs >= 6 matvecs, got {num_matvecs}")
    gen = torch.Generator().manual_seed(seed)
    k = num_matvecs // 3
    m = num_matvecs - 2 * k
    sketch = _rademacher_bits(dim, k, gen)
    q = torch.linalg.qr(torch.stack([matvec(_column(sketch, i)).to(torch.float64) for i in range(k)], dim=1)).Q
    del sketch
    projected = torch.empty(k, k, dtype=torch.float64)  # Q^T A Q, one column per matvec
    for i in range(k):
        projected[:, i] = q.T @ matvec(q[:, i]).to(torch.float64)
    top = math.fsum(projected.diagonal().tolist())
    ritz_max = torch.linalg.eigvalsh((projected + projected.T) / 2).max().item()
    probes = _rademacher_bits(dim, m, gen)
    samples = []
    for j in range(m):
        g = _column(probes, j)
        g -= q @ (q.T @ g)
        samples.append(float(g @ matvec(g).to(torch.float64)))
    samples = torch.tensor(samples, dtype=torch.float64)
    stderr = (samples.std() / math.sqrt(m)).item() if m > 1 else float("inf")
    return TraceEstimate(top + samples.mean().item(), stderr, 2 * k + m, ritz_max)
