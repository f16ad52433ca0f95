"""MeZO-SGD, n-SPSA and MeZO-Adam: the estimators of the MeZO paper."""

from __future__ import annotations

from .base import ZOOptimizer
from .rules import AdamRule, SGDRule


class MeZOSGD(ZOOptimizer):
    """ZO-SGD with in-place SPSA (MeZO; Malladi et al., "Fine-Tuning Language
    Models with Just Forward Passes", NeurIPS 2023, arXiv 2305.17333).

    Algorithm 1 (n = 1) and Algorithm 2 (n > 1, n-SPSA):

        d_j   = (L(theta + eps z_j) - L(theta - eps z_j)) / 2,   z_j ~ N(0, I)
        g_hat = (1/n) sum_j (d_j / eps) z_j
        theta <- theta - lr (g_hat + weight_decay * theta)

    A step costs 2n forward passes and, for n = 1, three regenerations of z
    (+eps, -2eps, then the restore fused with the update) instead of the
    original code's four. Every direction of an n-SPSA step is evaluated at
    the same theta on the closure's minibatch.

    Args:
        model_or_params: nn.Module, parameters, or param groups.
        lr: learning rate (>= 0).
        eps: perturbation scale (> 0). MeZO uses 1e-3.
        weight_decay: L2 coefficient (>= 0), per param group: choose which
            parameters decay by building groups, not by name matching.
        n: directions per step.
        seed: base seed of the noise stream.
        **options: sampler, perturbation, backend, chunk_size, threads, module
            (see ZOOptimizer).
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 n: int = 1, seed: int = 0, **options):
        super().__init__(model_or_params, dict(lr=lr, eps=eps, weight_decay=weight_decay), rule=SGDRule(),
                         n=n, seed=seed, **options)


class MeZOAdam(ZOOptimizer):
    """Adam on the MeZO gradient estimate (Malladi et al. 2023, arXiv 2305.17333, Appendix B).

        g_hat = (1/n) sum_j (d_j / eps) z_j
        m <- b1 m + (1 - b1) g_hat,  v <- b2 v + (1 - b2) g_hat^2
        theta <- theta (1 - lr wd) - lr m_hat / (sqrt(v_hat) + adam_eps)

    Extra state: the two moments, 2x the parameter bytes, so this estimator
    does not train in the memory of inference.

    Args:
        lr: learning rate (>= 0).
        eps: perturbation scale (> 0).
        betas: Adam's (b1, b2), each in [0, 1).
        adam_eps: Adam's denominator term (> 0); named apart from the
            perturbation scale eps.
        weight_decay: decoupled weight decay (>= 0).
        n, seed, **options: as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-4, eps: float = 1e-3, betas=(0.9, 0.999),
                 adam_eps: float = 1e-8, weight_decay: float = 0.0, *, n: int = 1, seed: int = 0, **options):
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas: each must be in [0, 1), got {betas!r}")
        if not adam_eps > 0:
            raise ValueError(f"adam_eps: must be > 0, got {adam_eps!r}")
        super().__init__(
            model_or_params,
            dict(lr=lr, eps=eps, betas=(b1, b2), adam_eps=adam_eps, weight_decay=weight_decay),
            rule=AdamRule(), n=n, seed=seed, **options,
        )
