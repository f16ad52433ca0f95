"""Forward gradients: the exact directional derivative along the keyed z, by forward-mode AD."""

from __future__ import annotations

from .base import ZOOptimizer
from .plans import JvpPlan
from .rules import SGDRule


class ForwardGrad(ZOOptimizer):
    """Forward-gradient descent (Baydin et al., "Gradients without Backpropagation", 2022;
    ZO-Bench's Forward-Grad, arXiv 2402.11592) along zoo's keyed directions:

        g_hat = (1/n) sum_j (grad L(theta) . z_j) z_j,   theta <- theta - lr (g_hat + wd theta)

    grad L . z_j is computed exactly by one forward-mode pass (torch.autograd.forward_ad through
    torch.func.functional_call), so this is the unbiased estimate SPSA approximates, without
    its O(eps^2) bias: a reference point, not a forward-only method. Each pass holds the tangent
    z (1x the trained parameters) and forward-mode activations (about 2x inference's); the
    closure must be differentiable and return a tensor. n jvp passes per step; the model is
    needed (pass the nn.Module). `eps` is unused and `perturbation` changes nothing: no
    weight is perturbed.

    Args:
        lr, weight_decay, n, seed, **options: as in MeZOSGD.
    """

    perturbs_weights = False

    def __init__(self, model_or_params, lr: float = 1e-6, eps: float = 1e-3, weight_decay: float = 0.0, *,
                 n: int = 1, seed: int = 0, **options):
        super().__init__(model_or_params, dict(lr=lr, eps=eps, weight_decay=weight_decay), rule=SGDRule(),
                         n=n, seed=seed, plan=JvpPlan, **options)
        if self.module is None:
            raise ValueError("model_or_params: forward-grad needs the nn.Module (or module=model with param groups)")
