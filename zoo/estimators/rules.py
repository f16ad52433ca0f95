"""Update rules: how a step turns the projected gradients into new weights.

A rule receives, for each direction z_j of the step, the finite difference
d_j = (L(theta + eps z_j) - L(theta - eps z_j)) / 2, and the terms that bring
the weights back to theta. For a parameter in a group with scale eps the
gradient estimate is

    g_hat = (1/n) sum_j (d_j / eps) z_j

(Malladi et al. 2023, Definition 1 / Algorithm 2). Rules fuse the restore
with the update, so the update is the step's last sweep.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from ..perturb import DirectionKey, ParamSlot, apply_, direction_chunk
from ..perturb.sweeps import Term


def gradient_coefficients(slots: Sequence[ParamSlot], keys: Sequence[DirectionKey], diffs: Sequence[float]):
    """Coefficient of z_j in g_hat for every parameter: d_j / (n eps_group)."""
    n = len(keys)
    return [(key, {s.uid: d / (n * s.group["eps"]) for s in slots}) for key, d in zip(keys, diffs)]


class UpdateRule:
    """Base class. `extra_state` names the parameter-sized state the rule keeps."""

    name = "base"
    extra_state = "none"

    def apply(self, opt, slots, keys, diffs, restore_terms: list[Term], at_theta: bool) -> None:
        raise NotImplementedError


class SGDRule(UpdateRule):
    """ZO-SGD with L2 weight decay (MeZO Algorithm 1).

    theta <- theta - lr * (g_hat + weight_decay * theta).

    With theta = p + r, where p is the perturbed weight and r the restore
    offset, this is one linear sweep:
    p <- (1 - lr wd) p + (1 - lr wd) r - lr g_hat.
    """

    name = "sgd"

    def apply(self, opt, slots, keys, diffs, restore_terms, at_theta):
        decay = {s.uid: 1.0 - s.group["lr"] * s.group["weight_decay"] for s in slots}
        merged: dict[DirectionKey, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        for key, coefs in restore_terms:
            for uid, c in coefs.items():
                merged[key][uid] += c * decay[uid]
        for key, coefs in gradient_coefficients(slots, keys, diffs):
            for s in slots:
                merged[key][s.uid] -= s.group["lr"] * coefs[s.uid]
        apply_(opt.backend, opt.field, slots, list(merged.items()), at_theta=at_theta, decay=decay)


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

    def apply(self, opt, slots, keys, diffs, restore_terms, at_theta):
        restore = dict(restore_terms)
        grads = dict(gradient_coefficients(slots, keys, diffs))
        all_keys = list(dict.fromkeys([*restore, *grads]))
        steps = {}
        for s in slots:
            st = opt.state[s.param]
            if "exp_avg" not in st:
                st["step"] = torch.tensor(0.0)
                st["exp_avg"] = torch.zeros_like(s.param, memory_format=torch.contiguous_format)
                st["exp_avg_sq"] = torch.zeros_like(s.param, memory_format=torch.contiguous_format)
            st["step"] += 1
            steps[s.uid] = st["step"].item()

        def fn(slot, start, stop, ws):
            group, st = slot.group, opt.state[slot.param]
            beta1, beta2 = group["betas"]
            t = steps[slot.uid]
            dtype = torch.float64 if slot.param.dtype == torch.float64 else torch.float32
            dev = slot.param.device
            n = stop - start
            off = ws.buffer("off", n, dev, dtype).zero_()
            g = ws.buffer("g", n, dev, dtype).zero_()
            for key in all_keys:
                r = restore.get(key, {}).get(slot.uid, 0.0)
                c = grads.get(key, {}).get(slot.uid, 0.0)
                if r == 0.0 and c == 0.0:
                    continue
                z = direction_chunk(opt.field, slot, key, start, stop, ws, at_theta=at_theta)
                if r:
                    off.add_(z, alpha=r)
                if c:
                    g.add_(z, alpha=c)
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
