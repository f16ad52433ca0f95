"""A plain re-implementation of the original MeZO step, as a speed baseline.

It follows the structure of the MeZO paper's released trainer: one seed per
step, each sweep re-seeds a generator and draws a fresh `torch.normal` tensor
per parameter, and the weights are rebound as `param.data = param.data + ...`.
A step is four sweeps: +eps, -2eps, +eps (restore), then the update.
(The original re-seeds the global RNG; this one uses a private generator so
that it does not disturb the process it is measured in.)
"""

from __future__ import annotations

import torch


class MeZOOriginal:
    def __init__(self, params, lr=1e-6, eps=1e-3, seed=0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.eps = lr, eps
        self.gen = torch.Generator()
        self.seed_source = torch.Generator().manual_seed(seed)

    def _perturb(self, seed, scale):
        self.gen.manual_seed(seed)
        for p in self.params:
            z = torch.normal(0.0, 1.0, size=p.data.size(), generator=self.gen, dtype=p.data.dtype)
            p.data = p.data + scale * z * self.eps

    @torch.no_grad()
    def step(self, closure):
        seed = int(torch.randint(0, 10**9, (1,), generator=self.seed_source))
        self._perturb(seed, 1)
        loss1 = closure()
        self._perturb(seed, -2)
        loss2 = closure()
        self._perturb(seed, 1)
        grad = ((loss1 - loss2) / (2 * self.eps)).item()
        self.gen.manual_seed(seed)
        for p in self.params:
            z = torch.normal(0.0, 1.0, size=p.data.size(), generator=self.gen, dtype=p.data.dtype)
            p.data = p.data - self.lr * grad * z
        return loss1
