"""MeZO-SVRG's query plan: a full-batch anchor every q steps, control variates between.

MeZO-SVRG (Gautam et al., "Variance-reduced Zeroth-Order Methods for Fine-Tuning Language
Models", ICML 2024, arXiv 2404.08080), with the SPSA estimate on a batch I
g_I(theta; z) = (L_I(theta + eps z) - L_I(theta - eps z)) / (2 eps) z:

    every q steps:  g <- g_full(theta_t; z_t),  anchor <- theta_t,  theta <- theta - lr_1 g
    otherwise:      theta <- theta - lr_2 [g_I(theta_t; z_t) - g_I(anchor; z_t) + g]

with the same z_t and the same minibatch I in both control-variate terms (the public code
draws a fresh z for the second term and aliases the anchor to the live weights; neither is
copied here). A full step costs 2 forwards over the full batch, a minibatch step 4. A skipped
full step (a non-finite loss) is taken again at the next step, so no step runs without an anchor.

g is one key and one coefficient per parameter, so it is stored as such. The anchor is either
a copy of the weights (`anchor="copy"`, 1x parameters, exact) or rebuilt from the keys logged
since it was taken (`anchor="keys"`, no parameter-sized state: anchor = theta + sum of the
updates since, each a key with a coefficient; needs weight_decay = 0).
"""

from __future__ import annotations

import torch

from ..perturb import DirectionKey
from .plans import Estimate, Query, QueryPlan, merged, offset, scaled

ANCHORS = ("copy", "keys")


def _terms_to_list(terms):
    return [[k.seed, k.index, {int(u): float(c) for u, c in coefs.items()}] for k, coefs in terms]


def _terms_from_list(items):
    return [(DirectionKey(int(seed), int(index)), {int(u): float(c) for u, c in coefs.items()})
            for seed, index, coefs in items]


class SVRGPlan(QueryPlan):
    """Args:
        q: steps per anchor (a full-batch step every q steps, q >= 1; q = 1 is full-batch MeZO).
        anchor: `"copy"` or `"keys"` (see the module docstring).
        anchor_lr_scale: lr_1 / lr_2, the full step's learning rate over the group's lr (the
            paper's grids have lr_1 = 10 lr_2).
    """

    name = "svrg"
    uses_full_batch = True

    def __init__(self, q: int = 2, anchor: str = "copy", anchor_lr_scale: float = 10.0):
        super().__init__(1)
        if not isinstance(q, int) or isinstance(q, bool) or q < 1:
            raise ValueError(f"q: steps per anchor must be an integer >= 1, got {q!r}")
        if anchor not in ANCHORS:
            raise ValueError(f"anchor: must be one of {ANCHORS}, got {anchor!r}")
        if isinstance(anchor_lr_scale, bool) or not isinstance(anchor_lr_scale, (int, float)) or not anchor_lr_scale > 0:
            raise ValueError(f"anchor_lr_scale: must be a number > 0, got {anchor_lr_scale!r}")
        self.q, self.anchor, self.anchor_lr_scale = q, anchor, float(anchor_lr_scale)
        self.gradient: list = []  # g = c_a z_a at the anchor, as terms
        self.offset: list = []  # anchor - theta, as terms (anchor="keys")
        self.needs_anchor = False  # a full step was skipped: the next step takes the anchor

    def check_group(self, group: dict) -> None:
        if self.anchor == "keys" and group.get("weight_decay", 0.0) != 0.0:
            raise ValueError("weight_decay: anchor='keys' rebuilds the anchor from the logged keys, which needs "
                             "weight_decay=0; use anchor='copy' for weight decay")

    def full_step(self, step: int) -> bool:
        return step % self.q == 0 or self.needs_anchor

    def skipped(self, opt, slots, keys) -> None:
        if self.full_step(opt.zo_state["step"]):
            self.needs_anchor = True

    def queries(self, opt, slots, keys):
        (key,) = keys
        if self.full_step(opt.zo_state["step"]):
            return [Query([offset(key, slots, s)], batch="full") for s in (1.0, -1.0)]
        here = [Query([offset(key, slots, s)]) for s in (1.0, -1.0)]
        if self.anchor == "copy":
            there = [Query([offset(key, slots, s)], base="anchor") for s in (1.0, -1.0)]
        else:
            there = [Query(merged(self.offset, [offset(key, slots, s)])) for s in (1.0, -1.0)]
        return here + there

    def estimate(self, opt, slots, keys, values):
        (key,) = keys
        if self.full_step(opt.zo_state["step"]):
            d = (values[0] - values[1]) / 2.0
            g = [(key, {s.uid: d / s.group["eps"] for s in slots})]
            return Estimate(scaled(g, self.anchor_lr_scale), extra={"anchor_gradient": g})
        here, there = (values[0] - values[1]) / 2.0, (values[2] - values[3]) / 2.0
        control = [(key, {s.uid: (here - there) / s.group["eps"] for s in slots})]
        return Estimate(merged(control, self.gradient))

    def before_update(self, opt, slots, estimate) -> None:
        if "anchor_gradient" not in estimate.extra:
            return
        self.gradient = estimate.extra["anchor_gradient"]
        self.offset = []
        self.needs_anchor = False
        if self.anchor == "copy":
            opt.perturbation.restore()  # the anchor is theta_t itself, not a perturbed point
            for s in slots:
                st = opt.state[s.owner]
                if "anchor" not in st:
                    st["anchor"] = s.param.detach().clone(memory_format=torch.contiguous_format)
                else:
                    st["anchor"].copy_(s.param.detach())

    def after_update(self, opt, slots, keys, estimate) -> None:
        if self.anchor == "keys":  # theta_{t+1} = theta_t - lr g_hat, so anchor - theta_{t+1} gains + lr g_hat
            self.offset = merged(self.offset, scaled(estimate.terms, {s.uid: s.group["lr"] for s in slots}))

    def swap(self, opt, slots) -> None:
        """Exchanges the live weights and the anchor copy, chunk by chunk (bit for bit, no copy of the model)."""

        def fn(slot, start, stop, ws):
            p = slot.flat()[start:stop]
            a = opt.state[slot.owner]["anchor"].view(-1)[start:stop]
            buf = ws.buffer("swap", stop - start, p.device, p.dtype)
            buf.copy_(p)
            p.copy_(a)
            a.copy_(buf)

        opt.backend.map(slots, fn)

    def forwards_at(self, step, slots):
        return 2 if self.full_step(step) else 4

    def state_dict(self) -> dict:
        return {"gradient": _terms_to_list(self.gradient), "offset": _terms_to_list(self.offset),
                "needs_anchor": self.needs_anchor}

    def load_state_dict(self, state: dict) -> None:
        self.gradient = _terms_from_list(state.get("gradient", []))
        self.offset = _terms_from_list(state.get("offset", []))
        self.needs_anchor = bool(state.get("needs_anchor", False))
