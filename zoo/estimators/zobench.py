"""ZO-Bench's estimators (Zhang et al., "Revisiting Zeroth-Order Optimization for
Memory-Efficient LLM Fine-Tuning: A Benchmark", ICML 2024, arXiv 2402.11592) as combinations
of zoo's pieces: each class only picks a query plan and an update rule.

ZO-Bench's own sweeps ran its Sign and Cons variants through the HF Trainer's AdamW (its
`--optimizer` default), which normalises Sign's scale away and makes Cons's undo inexact.
These are the algorithms as the paper states them: plain SGD steps.
"""

from __future__ import annotations

import functools

from .base import ZOOptimizer
from .plans import BlockPlan, ConservativePlan, OneSidedPlan, TwoPointPlan
from .rules import MomentumRule, SGDRule


def _sgd(lr, eps, weight_decay):
    return dict(lr=lr, eps=eps, weight_decay=weight_decay)


class ZOSign(ZOOptimizer):
    """ZO-SGD-Sign: a step along the sign of each projected gradient (ZO-Bench, Zhang et al.
    2024, arXiv 2402.11592).

        d_j = (L(theta + eps z_j) - L(theta - eps z_j)) / 2
        theta <- theta - lr ((1/n) sum_j sign(d_j) z_j + weight_decay theta)

    The step's length no longer depends on the size of the differences, only on their sign
    (ZO-Bench's `zo_sign_opt`). 2n forward passes, no extra state.

    Args:
        lr, eps, weight_decay, n, seed, **options: as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 n: int = 1, seed: int = 0, **options):
        super().__init__(model_or_params, _sgd(lr, eps, weight_decay), rule=SGDRule(), n=n, seed=seed,
                         plan=functools.partial(TwoPointPlan, coefficient="sign"), **options)


class ZOMomentum(ZOOptimizer):
    """ZO-SGD with heavy-ball momentum on the MeZO estimate (ZO-Bench's ZO-SGD-MMT, Zhang et al.
    2024, arXiv 2402.11592):

        g = g_hat + weight_decay theta,   b <- momentum b + (1 - dampening) g,   theta <- theta - lr b

    (b = g at the first step, torch.optim.SGD's convention). 2n forward passes; extra state:
    the buffer b, 1x the parameter bytes.

    Args:
        momentum: in [0, 1) (ZO-Bench's sweeps: 0.9).
        dampening: in [0, 1].
        lr, eps, weight_decay, n, seed, **options: as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 momentum: float = 0.9, dampening: float = 0.0, n: int = 1, seed: int = 0, **options):
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: must be a number in [0, 1), got {momentum!r}")
        if isinstance(dampening, bool) or not isinstance(dampening, (int, float)) or not 0.0 <= dampening <= 1.0:
            raise ValueError(f"dampening: must be a number in [0, 1], got {dampening!r}")
        super().__init__(model_or_params, dict(_sgd(lr, eps, weight_decay), momentum=momentum, dampening=dampening),
                         rule=MomentumRule(), n=n, seed=seed, **options)


class ZOConservative(ZOOptimizer):
    """ZO-SGD-Conservative: evaluate the step before taking it (ZO-Bench, Zhang et al. 2024,
    arXiv 2402.11592).

        L0 = L(theta);  g_hat from L(theta +- eps z_j) as in MeZO;
        theta <- argmin over {theta, theta - lr g_hat, theta + lr g_hat} of L (theta on ties)

    2n + 3 forward passes, no extra state. The candidates are the points the step can move to,
    so weight decay (which would move them) is refused.

    Args:
        lr, eps, n, seed, **options: as in MeZOSGD (weight_decay must be 0).
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 n: int = 1, seed: int = 0, **options):
        super().__init__(model_or_params, _sgd(lr, eps, weight_decay), rule=SGDRule(), n=n, seed=seed,
                         plan=ConservativePlan, **options)


class OneSided(ZOOptimizer):
    """One-sided (forward-difference) ZO-SGD with L(theta) shared by the directions (ZO-Bench's
    `one_side` mode, Zhang et al. 2024, arXiv 2402.11592):

        g_hat = (1/n) sum_j (L(theta + eps z_j) - L(theta)) / eps z_j
        theta <- theta - lr (g_hat + weight_decay theta)

    n + 1 forward passes (ZO-Bench's code re-evaluates L(theta) per direction, 2n). Its bias is
    O(eps), against O(eps^2) for the two-point estimate.

    Args:
        lr, eps, weight_decay, n, seed, **options: as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 n: int = 1, seed: int = 0, **options):
        super().__init__(model_or_params, _sgd(lr, eps, weight_decay), rule=SGDRule(), n=n, seed=seed,
                         plan=OneSidedPlan, **options)


class BlockZO(ZOOptimizer):
    """Block-wise ZO-SGD (ZO-Bench's module-wise perturbation, Zhang et al. 2024, arXiv
    2402.11592): one direction z_b and one projected gradient per block b of the model, then one
    update of every block:

        c_b = (L(theta + eps z_b) - L(theta - eps z_b)) / (2 eps)     (z_b zero outside block b)
        theta <- theta - lr (sum_b c_b z_b + weight_decay theta)

    Blocks are the model's repeated layers plus one block for the parameters outside them (with
    a plain parameter list, each tensor); `blocks=K` groups them into K contiguous blocks (all of
    them, where there are fewer than K). 2 x blocks forward passes, no extra state.

    Args:
        blocks: None (one block per layer) or the most blocks.
        lr, eps, weight_decay, seed, **options: as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 blocks: int | None = None, seed: int = 0, **options):
        super().__init__(model_or_params, _sgd(lr, eps, weight_decay), rule=SGDRule(), seed=seed,
                         plan=BlockPlan(blocks), **options)
