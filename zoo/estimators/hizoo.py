"""HiZOO: ZO-SGD along directions scaled by a diagonal Hessian estimate."""

from __future__ import annotations

import math

from .base import ZOOptimizer
from .plans import HessianPlan
from .rules import HessianRule


class HiZOO(ZOOptimizer):
    """HiZOO (Zhao et al., "Second-Order Fine-Tuning without Pain for LLMs: A Hessian Informed
    Zeroth-Order Optimizer", ICLR 2025, arXiv 2402.15173).

    With H a diagonal Hessian estimate (float32, starting at ones) and u = z / sqrt(H):

        L0 = L(theta),  L+- = L(theta +- eps u),  d = (L+ - L-)/2,
        kappa = (L+ + L- - 2 L0) / (2 eps^2)
        H <- max((1 - alpha) H + alpha |kappa| H z^2, hessian_min)
        theta <- theta (1 - lr wd) - lr (d / eps) z / sqrt(H)

    3 forward passes per step; extra state: H, 1x the parameters in float32. The public code's
    default smoothing alpha = 0 keeps H at 1, which makes HiZOO MeZO plus a wasted forward:
    alpha must be > 0 here.

    Args:
        hessian_smooth: alpha in (0, 1].
        hessian_min: the floor that keeps H away from 0 (> 0).
        curvature: "hizoo" (the paper's update above) or "unbiased" (kappa H (z^2 - 1), whose
            expectation is the diagonal itself; see HessianRule).
        lr, eps, weight_decay, seed, **options: as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 hessian_smooth: float = 1e-6, hessian_min: float = 1e-6, curvature: str = "hizoo", seed: int = 0,
                 **options):
        if isinstance(hessian_smooth, bool) or not isinstance(hessian_smooth, (int, float)) or not (
                0.0 < hessian_smooth <= 1.0):
            raise ValueError(f"hessian_smooth: alpha must be a number in (0, 1] (0 would make HiZOO MeZO plus a "
                             f"wasted forward), got {hessian_smooth!r}")
        if isinstance(hessian_min, bool) or not isinstance(hessian_min, (int, float)) or not (
                hessian_min > 0 and math.isfinite(hessian_min)):
            raise ValueError(f"hessian_min: must be a finite number > 0, got {hessian_min!r}")
        super().__init__(model_or_params, dict(lr=lr, eps=eps, weight_decay=weight_decay,
                                               hessian_smooth=hessian_smooth, hessian_min=hessian_min),
                         rule=HessianRule(curvature), plan=HessianPlan(), seed=seed, **options)
