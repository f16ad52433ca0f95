"""Sparse, layer-wise and subspace variants: MeZO-SGD with another direction field.

Each class only configures DirectionField; the step, the sweeps and the
update rule are MeZO-SGD's.
"""

from __future__ import annotations

from ..perturb import LayerSubset, LowRankProduct, LowRankSubspace, MagnitudeMask
from .mezo import MeZOSGD


class SparseMeZO(MeZOSGD):
    """Sparse MeZO (Liu et al., "Sparse MeZO: Less Parameters for Better
    Performance in Zeroth-Order LLM Fine-Tuning", arXiv 2402.15751).

    Only small-magnitude weights are perturbed and updated:

        m = 1[|theta| < tau],  tau = quantile(|theta_0|, 1 - sparsity) per parameter
        theta <- theta - lr (d / eps) (m * z)

    tau is fixed from the weights at the first step; the mask m is recomputed
    from the current weights at every step and never stored between steps.

    Args:
        sparsity: fraction of each parameter's elements left untouched (0.75:
            the smallest 25% in magnitude are trained).
        Other arguments as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 sparsity: float = 0.75, **options):
        super().__init__(model_or_params, lr, eps, weight_decay, magnitude=MagnitudeMask(sparsity), **options)


class LeZO(MeZOSGD):
    """LeZO: layer-wise sparse ZO (Wang et al., "Simultaneous Computation and
    Memory Efficient Zeroth-Order Optimizer for Fine-Tuning Large Language
    Models", arXiv 2410.09823).

    Each step draws a random subset S of the model's repeated layers; z is zero
    outside S, so only S is perturbed and updated:

        theta_l <- theta_l - lr (d / eps) z_l   for l in S (and non-layer parameters)

    Layers are the blocks of the model's largest nn.ModuleList; with a plain
    parameter list, or a model without one, each tensor is a layer.

    Args:
        active_fraction: fraction of layers perturbed per step.
        always_active_outside_layers: embeddings, norms and heads every step.
        Other arguments as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 active_fraction: float = 0.25, always_active_outside_layers: bool = True, **options):
        super().__init__(model_or_params, lr, eps, weight_decay,
                         layers=LayerSubset(active_fraction, always_active_outside_layers), **options)

    def _build_slots(self) -> None:
        super()._build_slots()
        if all(slot.layer is None for slot in self._slots):
            for slot in self._slots:
                slot.layer = slot.uid


class SubZero(MeZOSGD):
    """SubZero: random subspace ZO (Yu et al., "SubZero: Random Subspace
    Zeroth-Order Optimization for Memory-Efficient LLM Fine-Tuning",
    arXiv 2410.08989).

    For a matrix W (m x n): z_W = sqrt(m n)/r * U Z V with orthonormal U (m x r)
    and V (r x n) redrawn every `refresh` steps and Z an r x r Gaussian drawn
    per direction; other parameters get ordinary z. Then
    theta <- theta - lr (d / eps) z.

    Extra state: U and V, (m + n) r floats per matrix, rebuilt from the seed
    (not saved in the state_dict).

    Args:
        rank: r.
        refresh: steps between redraws of U and V.
        Other arguments as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 rank: int = 16, refresh: int = 1000, **options):
        super().__init__(model_or_params, lr, eps, weight_decay, subspace=LowRankSubspace(rank, refresh), **options)


class LOZO(MeZOSGD):
    """LOZO: low-rank ZO (Chen et al., "Enhancing Zeroth-Order Fine-Tuning for Language
    Models with Low-Rank Structures", ICLR 2025, arXiv 2410.07698).

    For a matrix W (m x n): z_W = U V^T with U (m x r) Gaussian drawn per direction and V
    (n x r) Gaussian redrawn every `interval` steps; other parameters get ordinary z. Then
    theta <- theta - lr ((d / eps) z + wd theta), as MeZO. 2n forwards. Extra state: none
    saved (V, n r floats per matrix, is rebuilt from the seed).

    Args:
        rank: r (LOZO's scripts: 1).
        interval: steps between redraws of V (LOZO's scripts: 100).
        Other arguments as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 rank: int = 1, interval: int = 100, **options):
        super().__init__(model_or_params, lr, eps, weight_decay, subspace=LowRankProduct(rank, interval), **options)
