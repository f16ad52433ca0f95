"""Update rules: how a step turns the gradient estimate into new weights.

A rule receives the step's estimate from its query plan (plans.py), the terms
of g_hat = sum_k c_k z_k (for MeZO's two-point plan c_j = d_j / (n eps) with
d_j = (L(theta + eps z_j) - L(theta - eps z_j)) / 2; Malladi et al. 2023,
Definition 1 / Algorithm 2), and the terms that bring the weights back to
theta. Rules fuse the restore with the update, so the update is the step's
last sweep.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from ..perturb import DirectionKey, ParamSlot, apply_, direction_chunk
from ..perturb.sweeps import Term


class UpdateRule:
    """Base class. `extra_state` names the parameter-sized state the rule keeps."""

    name = "base"
    extra_state = "none"
    #: The per-parameter state the rule keeps: all of these keys or none (a saved state missing one is damaged).
    state_keys: tuple[str, ...] = ()
    #: Keys whose values must be >= 0 (a second moment) and > 0 (a curvature that is divided by).
    nonnegative_keys: tuple[str, ...] = ()
    positive_keys: tuple[str, ...] = ()

    def apply(self, opt, slots, estimate, restore_terms: list[Term], at_theta: bool) -> None:
        """Moves the weights from where they are (theta plus `restore_terms` away) by the estimate.

        Args:
            estimate: the plan's Estimate; `estimate.terms` are the coefficients of g_hat.
        """
        raise NotImplementedError

    def make_preconditioner(self, opt):
        """The field's preconditioner this rule's state provides (HiZOO's 1/sqrt(H)), or None."""
        return None


class SGDRule(UpdateRule):
    """ZO-SGD with L2 weight decay (MeZO Algorithm 1).

    theta <- theta - lr * (g_hat + weight_decay * theta).

    With theta = p + r, where p is the perturbed weight and r the restore
    offset, this is one linear sweep:
    p <- (1 - lr wd) p + (1 - lr wd) r - lr g_hat.
    """

    name = "sgd"

    def apply(self, opt, slots, estimate, restore_terms, at_theta):
        decay = {s.uid: 1.0 - s.group["lr"] * s.group["weight_decay"] for s in slots}
        lr = {s.uid: s.group["lr"] for s in slots}
        merged: dict[DirectionKey, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for key, coefs in restore_terms:
            for uid, c in coefs.items():
                merged[key][uid] += c * decay[uid]
        for key, coefs in estimate.terms:
            for uid, c in coefs.items():
                merged[key][uid] -= lr[uid] * c
        apply_(opt.backend, opt.field, slots, list(merged.items()), at_theta=at_theta, decay=decay)


def _accumulate(opt, slot, start, stop, ws, at_theta, restore, grads, dtype):
    """(offset back to theta, g_hat) on elements [start, stop) of `slot`, in `dtype` workspace buffers."""
    dev, n = slot.param.device, stop - start
    off = ws.buffer("off", n, dev, dtype).zero_()
    g = ws.buffer("g", n, dev, dtype).zero_()
    for key in dict.fromkeys([*restore, *grads]):
        r = restore.get(key, {}).get(slot.uid, 0.0)
        c = grads.get(key, {}).get(slot.uid, 0.0)
        if r == 0.0 and c == 0.0:
            continue
        z = direction_chunk(opt.field, slot, key, start, stop, ws, at_theta=at_theta)
        if r:
            off.add_(z, alpha=r)
        if c:
            g.add_(z, alpha=c)
    return off, g


class AdamRule(UpdateRule):
    """Adam on the ZO gradient estimate (MeZO-Adam; Malladi et al. 2023, App. B).

    m <- b1 m + (1 - b1) g_hat,   v <- b2 v + (1 - b2) g_hat^2,
    theta <- theta (1 - lr wd) - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + adam_eps).

    Weight decay is decoupled (AdamW, Loshchilov & Hutter 2019). The moments
    m and v are kept in the parameter's dtype, as torch.optim.Adam does, and
    cost 2x the parameter bytes: MeZO-Adam no longer trains in the memory of
    inference.
    """

    name = "adam"
    extra_state = "2x parameters"
    state_keys = ("step", "exp_avg", "exp_avg_sq")
    nonnegative_keys = ("step", "exp_avg_sq")

    def apply(self, opt, slots, estimate, restore_terms, at_theta):
        restore = dict(restore_terms)
        grads = dict(estimate.terms)
        steps = {}
        for s in slots:
            st = opt.state[s.owner]
            if "exp_avg" not in st:
                st["step"] = torch.tensor(0.0)
                st["exp_avg"] = torch.zeros_like(s.param, memory_format=torch.contiguous_format)
                st["exp_avg_sq"] = torch.zeros_like(s.param, memory_format=torch.contiguous_format)
            st["step"] += 1
            steps[s.uid] = st["step"].item()

        def fn(slot, start, stop, ws):
            group, st = slot.group, opt.state[slot.owner]
            beta1, beta2 = group["betas"]
            t = steps[slot.uid]
            dtype = torch.float64 if slot.param.dtype == torch.float64 else torch.float32
            dev = slot.param.device
            n = stop - start
            off, g = _accumulate(opt, slot, start, stop, ws, at_theta, restore, grads, dtype)
            p = slot.flat()[start:stop]
            m_store = st["exp_avg"].view(-1)[start:stop]
            v_store = st["exp_avg_sq"].view(-1)[start:stop]
            m = ws.buffer("m", n, dev, dtype).copy_(m_store).mul_(beta1).add_(g, alpha=1 - beta1)
            v = ws.buffer("v", n, dev, dtype).copy_(v_store).mul_(beta2).addcmul_(g, g, value=1 - beta2)
            m_store.copy_(m)
            v_store.copy_(v)
            denom = v.div_(1 - beta2**t).sqrt_().add_(group["adam_eps"])
            step = m.div_(denom)
            theta = off.add_(p).mul_(1.0 - group["lr"] * group["weight_decay"])
            theta.add_(step, alpha=-group["lr"] / (1 - beta1**t))
            p.copy_(theta)

        opt.backend.map(slots, fn)


class MomentumRule(UpdateRule):
    """ZO-SGD with heavy-ball momentum (ZO-Bench's ZO-SGD-MMT, Zhang et al. 2024,
    arXiv 2402.11592), with torch.optim.SGD's convention:

        g <- g_hat + weight_decay * theta
        b <- g                           at the first step,
        b <- momentum * b + (1 - dampening) * g   after,
        theta <- theta - lr * b.

    The buffer b is kept in the parameter's dtype, as torch.optim.SGD does: 1x the
    parameter bytes.
    """

    name = "momentum"
    extra_state = "1x parameters"
    state_keys = ("momentum_buffer",)

    def apply(self, opt, slots, estimate, restore_terms, at_theta):
        restore, grads = dict(restore_terms), dict(estimate.terms)
        first = {}
        for s in slots:
            st = opt.state[s.owner]
            first[s.uid] = "momentum_buffer" not in st
            if first[s.uid]:
                st["momentum_buffer"] = torch.zeros_like(s.param, memory_format=torch.contiguous_format)

        def fn(slot, start, stop, ws):
            group = slot.group
            dtype = torch.float64 if slot.param.dtype == torch.float64 else torch.float32
            off, g = _accumulate(opt, slot, start, stop, ws, at_theta, restore, grads, dtype)
            p = slot.flat()[start:stop]
            store = opt.state[slot.owner]["momentum_buffer"].view(-1)[start:stop]
            theta = off.add_(p)
            if group["weight_decay"]:
                g.add_(theta, alpha=group["weight_decay"])
            b = ws.buffer("b", stop - start, p.device, dtype)
            if first[slot.uid]:
                b.copy_(g)
            else:
                b.copy_(store).mul_(group["momentum"]).add_(g, alpha=1 - group["dampening"])
            store.copy_(b)
            p.copy_(theta.add_(b, alpha=-group["lr"]))

        opt.backend.map(slots, fn)


class HessianPreconditioner:
    """Scales z by 1/sqrt(H) with H the diagonal Hessian estimate of each parameter (HiZOO).

    H lives in the optimizer's state (`state[param]["hessian"]`, float32, created as ones), so
    it is saved and resumed with the state_dict like Adam's moments.
    """

    def __init__(self, opt):
        self._opt = opt

    def prepare(self, slots) -> None:
        """Creates H = 1 for parameters without one, in slot order (before the sweeps' threads read it)."""
        for slot in slots:
            st = self._opt.state[slot.owner]
            if "hessian" not in st:
                st["hessian"] = torch.ones(slot.param.shape, dtype=torch.float32, device=slot.param.device)

    def hessian(self, slot: ParamSlot) -> torch.Tensor:
        return self._opt.state[slot.owner]["hessian"]

    def scale_(self, out: torch.Tensor, slot: ParamSlot, start: int) -> torch.Tensor:
        h = self.hessian(slot).view(-1)[start : start + out.numel()]
        return out.mul_(h.rsqrt().to(out.dtype))


class HessianRule(UpdateRule):
    """HiZOO's update (Zhao et al., "Second-Order Fine-Tuning without Pain for LLMs: A Hessian
    Informed Zeroth-Order Optimizer", ICLR 2025, arXiv 2402.15173). With u = z / sqrt(H) the
    direction the step was evaluated along, d = (L+ - L-)/2 and
    kappa = (L+ + L- - 2 L0) / (2 eps^2) from the plan's three points:

        H' = (1 - alpha) H + alpha |kappa| H z^2          (curvature="hizoo", the paper's)
        H' = (1 - alpha) H + alpha kappa H (z^2 - 1)      (curvature="unbiased")
        H' <- max(H', hessian_min)
        theta <- theta (1 - lr wd) - lr (d / eps) z / sqrt(H')

    The step uses the updated H', the perturbation the old H, as the paper does. On a quadratic
    with diagonal Hessian D in dimension d, kappa = sum_k D_k z_k^2 / (2 H_k): the unbiased form
    is E[...] = D (E[z_i^2 (z_i^2 - 1)] = 2), so H converges to D; the paper's form converges
    to D (d + 2) / 2, proportional to D (tests/test_plans.py measures both). H is float32
    whatever the parameter dtype, and bounded below by `hessian_min`.
    """

    name = "hessian"
    extra_state = "1x parameters (float32 diagonal Hessian)"
    state_keys = ("hessian",)
    positive_keys = ("hessian",)
    CURVATURES = ("hizoo", "unbiased")

    def __init__(self, curvature: str = "hizoo"):
        if curvature not in self.CURVATURES:
            raise ValueError(f"curvature: must be one of {self.CURVATURES}, got {curvature!r}")
        self.curvature = curvature

    def make_preconditioner(self, opt):
        return HessianPreconditioner(opt)

    def apply(self, opt, slots, estimate, restore_terms, at_theta):
        restore, grads = dict(restore_terms), dict(estimate.terms)
        signed = estimate.extra["curvature_signed"]
        pre = opt.field.preconditioner

        def fn(slot, start, stop, ws):
            group = slot.group
            dtype = torch.float64 if slot.param.dtype == torch.float64 else torch.float32
            dev, n = slot.param.device, stop - start
            h_store = pre.hessian(slot).view(-1)[start:stop]
            h = ws.buffer("h", n, dev, dtype).copy_(h_store)
            off = ws.buffer("off", n, dev, dtype).zero_()
            step = ws.buffer("g", n, dev, dtype).zero_()
            z2 = ws.buffer("z2", n, dev, dtype).zero_()
            for key in dict.fromkeys([*restore, *grads]):
                r = restore.get(key, {}).get(slot.uid, 0.0)
                c = grads.get(key, {}).get(slot.uid, 0.0)
                if r:  # the way back along u = z / sqrt(H_old), drawn as the perturbation drew it
                    off.add_(direction_chunk(opt.field, slot, key, start, stop, ws, at_theta=at_theta), alpha=r)
                if key in grads:  # z^2 feeds H even where this step's difference is exactly 0
                    z = direction_chunk(opt.field, slot, key, start, stop, ws, at_theta=at_theta, precondition=False)
                    step.add_(z, alpha=c)
                    z2.addcmul_(z, z)
            alpha, kappa = group["hessian_smooth"], signed[slot.uid]
            if self.curvature == "hizoo":
                sample = z2.mul_(h).mul_(abs(kappa))
            else:
                sample = z2.sub_(1.0).mul_(h).mul_(kappa)
            h.mul_(1.0 - alpha).add_(sample, alpha=alpha).clamp_(min=group["hessian_min"])
            h_store.copy_(h)
            p = slot.flat()[start:stop]
            theta = off.add_(p).mul_(1.0 - group["lr"] * group["weight_decay"])
            p.copy_(theta.addcdiv_(step, h.sqrt_(), value=-group["lr"]))

        opt.backend.map(slots, fn)
