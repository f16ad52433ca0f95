"""A linear map stored as a tensor train of small cores, applied without forming its matrix.

The matrix W (in x out, in = m_1···m_a, out = n_1···n_b) is the order-(a+b) tensor

    W[i_1..i_a, j_1..j_b] = G_1[:, i_1, :] ··· G_a[:, i_a, :] G_{a+1}[:, j_1, :] ··· G_{a+b}[:, j_b, :],

each core G_k of shape (r_{k-1}, f_k, r_k) with r_0 = r_{a+b} = 1 (indices row-major). `forward` contracts
the input-side cores with x one factor at a time, then expands through the output-side cores, so it costs
O(batch · (in + out) · r · max f) and never holds an in x out array (AdaZeta's `forward_tt_full_precision`;
Novikov et al. 2015, "Tensorizing Neural Networks").
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TTLinear(nn.Module):
    """y = x W + bias with W a tensor train (see the module).

    Args:
        in_factors: m_1..m_a, whose product is the input width.
        out_factors: n_1..n_b, whose product is the output width.
        rank: the inner ranks r_1..r_{a+b-1}.
        std: the standard deviation the entries of W get at initialisation (each core's is set so that a
            product of a+b cores summed over the ranks has it).
        zero_last: start the last core at zero, so W = 0 until it moves (the other cores keep their scale,
            so that W then grows at the scale of `std`).
        generator: the random source of the initialisation (zoo never draws from torch's global RNG).
    """

    def __init__(self, in_factors: list[int], out_factors: list[int], rank: int, std: float, zero_last: bool = False,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.in_factors, self.out_factors = list(in_factors), list(out_factors)
        factors = self.in_factors + self.out_factors
        ranks = [1] + [rank] * (len(factors) - 1) + [1]
        # the cores are this module's own parameters (not an nn.ParameterList's): the exact perturbation
        # perturbs a module's own parameters when it runs, and a ParameterList never runs
        for k, f in enumerate(factors):
            self.register_parameter(f"core{k}", nn.Parameter(torch.empty(ranks[k], f, ranks[k + 1], dtype=dtype)))
        self.bias = nn.Parameter(torch.zeros(math.prod(self.out_factors), dtype=dtype))
        # Var W = (prod of inner ranks) * s^(2d) for cores of i.i.d. N(0, s^2): solve for s
        inner = math.prod(ranks[1:-1])
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"std: must be a finite number > 0, got {std!r}")
        core_std = (std ** 2 / inner) ** (1 / (2 * len(factors)))
        with torch.no_grad():
            for core in self.cores:
                core.copy_(torch.randn(core.shape, generator=generator, dtype=torch.float64) * core_std)
            if zero_last:
                self.cores[-1].zero_()

    @property
    def cores(self) -> list[nn.Parameter]:
        return [getattr(self, f"core{k}") for k in range(len(self.in_factors) + len(self.out_factors))]

    @property
    def in_features(self) -> int:
        return math.prod(self.in_factors)

    @property
    def out_features(self) -> int:
        return math.prod(self.out_factors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        b = math.prod(lead)
        a = len(self.in_factors)
        t = x.reshape(b, self.in_factors[0], -1, 1)  # [batch, m_k, the remaining m's, r_{k-1}]
        for k in range(a):
            t = torch.einsum("bmpr,rms->bps", t, self.cores[k])
            if k + 1 < a:
                t = t.reshape(b, self.in_factors[k + 1], -1, t.shape[-1])
        u = t.reshape(b, 1, -1)  # [batch, output indices so far, r]
        for core in self.cores[a:]:
            u = torch.einsum("bpr,rns->bpns", u, core).reshape(b, -1, core.shape[-1])
        return u.reshape(*lead, self.out_features) + self.bias

    def to_dense(self) -> torch.Tensor:
        """W as an in x out matrix: for tests and inspection only (it is what forward avoids)."""
        w = self.cores[0].reshape(-1, self.cores[0].shape[-1])
        for core in self.cores[1:]:
            w = torch.einsum("ar,rfs->afs", w, core).reshape(-1, core.shape[-1])
        return w.reshape(self.in_features, self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_factors}, out={self.out_factors}, ranks={[c.shape[0] for c in self.cores][1:]}"
