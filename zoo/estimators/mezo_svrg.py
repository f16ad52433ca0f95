"""MeZO-SVRG: control variates from a periodic full-batch anchor."""

from __future__ import annotations

from .base import ZOOptimizer
from .rules import SGDRule
from .svrg import SVRGPlan


class MeZOSVRG(ZOOptimizer):
    """MeZO-SVRG (Gautam et al., "Variance-reduced Zeroth-Order Methods for Fine-Tuning
    Language Models", ICML 2024, arXiv 2404.08080).

    With g_B(theta; z) = (L_B(theta + eps z) - L_B(theta - eps z)) / (2 eps) z:

        step % q == 0:  g <- g_full(theta; z_t),  anchor <- theta,
                        theta <- theta - anchor_lr_scale lr (g + wd theta)
        otherwise:      theta <- theta - lr (g_I(theta; z_t) - g_I(anchor; z_t) + g + wd theta)

    with one z_t and one minibatch I for both control-variate terms. Give the full batch as
    `opt.step(closure, full_closure=...)`; with none, the step's closure serves for both.
    Forward passes alternate: 2 at a full step (over the full batch), 4 at the others.

    Args:
        q: steps per anchor.
        anchor: "copy" (the anchor is a copy of the weights: 1x parameters, exact) or "keys"
            (rebuilt from the keys logged since the anchor: no parameter-sized state; needs
            weight_decay=0).
        anchor_lr_scale: the full step's lr over the group's lr (lr_1 / lr_2).
        lr, eps, weight_decay, seed, **options: as in MeZOSGD.
    """

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 q: int = 2, anchor: str = "copy", anchor_lr_scale: float = 10.0, seed: int = 0, **options):
        super().__init__(model_or_params, dict(lr=lr, eps=eps, weight_decay=weight_decay), rule=SGDRule(),
                         plan=SVRGPlan(q, anchor, anchor_lr_scale), seed=seed, **options)
