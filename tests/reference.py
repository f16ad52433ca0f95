"""A slow float64 reference of every estimator: z materialised from the stream's definition.

It shares no code with zoo's sweeps, kernels, masks, subspaces or update rules:
only the published definitions of the two streams and the estimators' papers:

- torch-generator: block b of parameter uid is drawn by the sampler from a
  generator seeded with DirectionKey.block_seed;
- philox: Philox-4x32-10 (Salmon et al., 2011) keyed by philox_seed, with the
  counter layout of zoo/perturb/kernels/philox.c and Box-Muller as Triton's
  randn4x, each float32 operation correctly rounded (numpy, via float64).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.func import functional_call

from zoo.perturb import BLOCK_SIZE, DirectionKey, mix, step_seed
from zoo.estimators import QuerySchedule

GROUP = 4096
M32 = np.uint64(0xFFFFFFFF)


def philox4x32(counters: np.ndarray, seed: int):
    """Philox-4x32-10 of counters (c0 = low word, c1 = high word, c2 = c3 = 0) under a 64-bit key."""
    c0 = counters.astype(np.uint64) & M32
    c1 = counters.astype(np.uint64) >> np.uint64(32)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for _ in range(10):
        pa = np.uint64(0xD2511F53) * c0
        pb = np.uint64(0xCD9E8D57) * c2
        c0, c2, c1, c3 = (pb >> np.uint64(32)) ^ c1 ^ k0, (pa >> np.uint64(32)) ^ c3 ^ k1, pb & M32, pa & M32
        k0 = (k0 + np.uint64(0x9E3779B9)) & M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & M32
    return [c.astype(np.uint32) for c in (c0, c1, c2, c3)]


def _f32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32)


def philox_uniform(x: np.ndarray) -> np.ndarray:
    i = x.view(np.int32)
    i = np.where(i < 0, ~i, i)
    return i.astype(np.float32) * np.float32(4.6566127342e-10)


def box_muller(u1, u2):
    u1 = np.maximum(np.float32(1e-7), u1)
    r = _f32(np.sqrt(_f32(np.float32(-2.0) * _f32(np.log(u1.astype(np.float64)))).astype(np.float64)))
    th = np.float32(6.283185307179586) * u2
    return r * _f32(np.cos(th.astype(np.float64))), r * _f32(np.sin(th.astype(np.float64)))


def philox_stream(seed: int, numel: int, sampler: str = "gaussian") -> torch.Tensor:
    """z[0:numel] of one parameter's direction in the Philox stream, as float32."""
    groups = math.ceil(numel / GROUP)
    if sampler == "rademacher":
        per = GROUP // 128
        words = philox4x32(np.arange(groups * per, dtype=np.uint64), seed)
        z = np.empty((groups, 4, 32, per), dtype=np.float32)
        for k in range(4):
            w = words[k].reshape(groups, per)
            for b in range(32):
                z[:, k, b, :] = ((w >> np.uint32(b)) & np.uint32(1)).astype(np.float32) * 2 - 1
    else:
        per = GROUP // 4
        u = [philox_uniform(w) for w in philox4x32(np.arange(groups * per, dtype=np.uint64), seed)]
        n0, n1 = box_muller(u[0], u[1])
        n2, n3 = box_muller(u[2], u[3])
        z = np.stack([n.reshape(groups, per) for n in (n0, n1, n2, n3)], axis=1)
    return torch.from_numpy(z.reshape(-1)[:numel].copy())


def philox_seed(key: DirectionKey, uid: int) -> int:
    return mix(0x9E11, key.seed, key.index, uid)


def stream(uid, numel, key, sampler="gaussian", kind="torch-generator"):
    if kind == "philox":
        return philox_stream(philox_seed(key, uid), numel, sampler).double()
    return generator_stream(uid, numel, key, sampler)


def generator_stream(uid, numel, key, sampler="gaussian"):
    out = []
    for b in range(math.ceil(numel / BLOCK_SIZE)):
        g = torch.Generator().manual_seed(key.block_seed(uid, b))
        block = torch.empty(min(BLOCK_SIZE, numel - b * BLOCK_SIZE))
        if sampler == "rademacher":
            block.random_(0, 2, generator=g).mul_(2).sub_(1)
        else:
            block.normal_(generator=g)
        out.append(block)
    return torch.cat(out).double()


class Reference:
    def __init__(self, model, name, hyper, seed=0, stream="torch-generator"):
        self.model = model
        self.stream = stream
        self.name = name
        self.h = dict(hyper)
        self.seed = seed
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.theta = {n: p.detach().clone().double() for n, p in model.named_parameters() if p.requires_grad}
        self.t = 0
        self.m = {n: torch.zeros_like(v) for n, v in self.theta.items()}
        self.v = {n: torch.zeros_like(v) for n, v in self.theta.items()}
        self.adam_t = 0
        self.buf = {}
        self.hessian = {n: torch.ones_like(v) for n, v in self.theta.items()}
        self.given = None
        self.tau = {}
        if name == "sparse-mezo":
            q = 1 - self.h.get("sparsity", 0.75)
            self.tau = {n: torch.quantile(v.abs().float().flatten(), q).item() for n, v in self.theta.items()}
            # a tensor with tau = 0 (or sparsity 0) is perturbed densely rather than frozen
            self.tau = {n: math.inf if q == 1 or t == 0.0 else t for n, t in self.tau.items()}

    def _layer_of(self):
        layers = {}
        for i, block in enumerate(self.model.blocks):
            for n, _ in block.named_parameters():
                layers[f"blocks.{i}.{n}"] = i
        return layers

    def direction(self, key, step):
        zs = {}
        self.active = set(self.names)
        active = set(self.names)
        if self.name == "lezo":
            layer_of = self._layer_of()
            nl = len(self.model.blocks)
            k = max(1, round(self.h.get("active_fraction", 0.25) * nl))
            g = torch.Generator().manual_seed(mix(key.seed, 0x1A7E))
            chosen = set(torch.randperm(nl, generator=g)[:k].tolist())
            active = {n for n in self.names if layer_of.get(n) is None or layer_of[n] in chosen}
            self.active = active
        for uid, n in enumerate(self.names):
            th = self.theta[n]
            if n not in active:
                zs[n] = torch.zeros_like(th)
                continue
            r = self.h.get("rank", 16)
            if self.name == "subzero" and th.dim() == 2 and min(th.shape) > r:
                m_, n_ = th.shape
                epoch = step // self.h.get("refresh", 1000)
                g = torch.Generator().manual_seed(mix(self.seed, uid, epoch, 0x5B5B))
                a, b = torch.randn(m_, r, generator=g), torch.randn(n_, r, generator=g)
                u, v = torch.linalg.qr(a.double()).Q, torch.linalg.qr(b.double()).Q.T
                gz = torch.Generator().manual_seed(key.tagged_seed(uid, 0))
                core = torch.empty(r, r).normal_(generator=gz).double()
                zs[n] = math.sqrt(m_ * n_) / r * (u @ core @ v)
                continue
            if self.name == "lozo" and th.dim() == 2 and min(th.shape) > self.h.get("rank", 1):
                r = self.h.get("rank", 1)
                epoch = step // self.h.get("interval", 100)
                gv = torch.Generator().manual_seed(mix(self.seed, uid, epoch, 0x1020))
                v = torch.randn(th.shape[1], r, generator=gv)
                gu = torch.Generator().manual_seed(key.tagged_seed(uid, 1))
                u = torch.empty(th.shape[0], r).normal_(generator=gu)
                zs[n] = (u @ v.T).double()  # LOZO's z is the float32 product, as zoo defines it
                continue
            z = stream(uid, th.numel(), key, self.h.get("sampler", "gaussian"), self.stream).view_as(th)
            if self.name == "hizoo":
                z = z / self.hessian[n].sqrt()
            if self.name == "sparse-mezo":
                z = z * (th.abs() < self.tau[n])
            zs[n] = z
        return zs

    def loss(self, params, x, y):
        return torch.nn.functional.mse_loss(functional_call(self.model, params, (x,)), y).item()

    def blocks(self):
        """block-zo's blocks: the parameters outside the layers, then each layer, grouped into K contiguous blocks."""
        layer_of = self._layer_of()
        units = [[n for n in self.names if n not in layer_of]]
        units += [[n for n in self.names if layer_of.get(n) == i] for i in range(len(self.model.blocks))]
        k = self.h.get("blocks")
        if k is None or k >= len(units):
            return units
        bounds = [round(i * len(units) / k) for i in range(k + 1)]
        return [[n for u in units[a:b] for n in u] for a, b in zip(bounds, bounds[1:])]

    def evaluate(self, params, x, y):
        """L at `params`, or the next of the given losses (a test of the update for fixed losses)."""
        if self.given is not None:
            return self.given.pop(0)
        return self.loss(params, x, y)

    def at(self, offsets, base=None):
        base = self.theta if base is None else base
        return {k: base[k] + offsets.get(k, 0.0) for k in self.names}

    def sgd(self, ghat):
        lr, wd = self.h["lr"], self.h.get("weight_decay", 0.0)
        for k in self.names:
            if k in self.active:  # LeZO leaves inactive layers untouched, weight decay included
                self.theta[k] = self.theta[k] - lr * (ghat[k] + wd * self.theta[k])

    def step(self, x, y, losses=None):
        """One step of the estimator in float64; `losses` (a list) replaces the forward passes."""
        self.given = None if losses is None else list(losses)
        schedule = self.h.get("query_schedule")
        n = self.h.get("n", 1) if schedule is None else QuerySchedule.coerce(schedule)(self.t)
        lr, eps, wd = self.h["lr"], self.h["eps"], self.h.get("weight_decay", 0.0)
        sseed = step_seed(self.seed, self.t)
        ghat = {k: torch.zeros_like(v) for k, v in self.theta.items()}
        name = self.name
        if name == "hizoo" and not hasattr(self, "hessian_ready"):
            self.hessian_ready = True
        if name == "block-zo":
            self.active = set(self.names)
            for b, block in enumerate(self.blocks()):
                z = self.direction(DirectionKey(sseed, b), self.t)
                plus = self.evaluate(self.at({k: eps * z[k] for k in block}), x, y)
                minus = self.evaluate(self.at({k: -eps * z[k] for k in block}), x, y)
                for k in block:
                    ghat[k] += (plus - minus) / (2 * eps) * z[k]
            self.sgd(ghat)
        elif name == "hizoo":
            key = DirectionKey(sseed, 0)
            u = self.direction(key, self.t)
            raw = {k: u[k] * self.hessian[k].sqrt() for k in self.names}
            base = self.evaluate(self.theta, x, y)
            plus = self.evaluate(self.at({k: eps * u[k] for k in self.names}), x, y)
            minus = self.evaluate(self.at({k: -eps * u[k] for k in self.names}), x, y)
            kappa = (plus + minus - 2 * base) / (2 * eps**2)
            alpha, floor = self.h["hessian_smooth"], self.h.get("hessian_min", 1e-6)
            for k in self.names:
                h = self.hessian[k]
                if self.h.get("curvature", "hizoo") == "hizoo":
                    sample = abs(kappa) * h * raw[k] ** 2
                else:
                    sample = kappa * h * (raw[k] ** 2 - 1)
                h_new = ((1 - alpha) * h + alpha * sample).clamp(min=floor)
                self.theta[k] = self.theta[k] * (1 - lr * wd) - lr * (plus - minus) / (2 * eps) * raw[k] / h_new.sqrt()
                self.hessian[k] = h_new.float().double()  # zoo stores H in float32
        elif name == "mezo-svrg":
            q, scale = self.h.get("q", 2), self.h.get("anchor_lr_scale", 10.0)
            key = DirectionKey(sseed, 0)
            z = self.direction(key, self.t)
            if self.t % q == 0:
                self.anchor = {k: v.clone() for k, v in self.theta.items()}
                plus = self.evaluate(self.at({k: eps * z[k] for k in self.names}), x, y)
                minus = self.evaluate(self.at({k: -eps * z[k] for k in self.names}), x, y)
                self.g = {k: (plus - minus) / (2 * eps) * z[k] for k in self.names}
                ghat = {k: scale * self.g[k] for k in self.names}
            else:
                d = []
                for base in (self.theta, self.anchor):
                    plus = self.evaluate(self.at({k: eps * z[k] for k in self.names}, base), x, y)
                    minus = self.evaluate(self.at({k: -eps * z[k] for k in self.names}, base), x, y)
                    d.append((plus - minus) / (2 * eps))
                ghat = {k: (d[0] - d[1]) * z[k] + self.g[k] for k in self.names}
            self.sgd(ghat)
        elif name == "forward-grad":
            for j in range(n):
                z = self.direction(DirectionKey(sseed, j), self.t)
                if self.given is not None:
                    self.given.pop(0)
                    dd = self.given.pop(0)
                else:
                    params = {k: v.clone().requires_grad_(True) for k, v in self.theta.items()}
                    with torch.enable_grad():
                        out = torch.nn.functional.mse_loss(functional_call(self.model, params, (x,)), y)
                        grads = torch.autograd.grad(out, [params[k] for k in self.names])
                    dd = sum((g * z[k]).sum() for g, k in zip(grads, self.names)).item()
                for k in self.names:
                    ghat[k] += dd / n * z[k]
            self.sgd(ghat)
        else:
            base = self.evaluate(self.theta, x, y) if name in ("one-sided", "zo-cons") else None
            for j in range(n):
                z = self.direction(DirectionKey(sseed, j), self.t)
                plus = self.evaluate(self.at({k: eps * z[k] for k in self.names}), x, y)
                if name == "one-sided":
                    c = (plus - base) / (n * eps)
                else:
                    minus = self.evaluate(self.at({k: -eps * z[k] for k in self.names}), x, y)
                    d = (plus - minus) / 2
                    c = math.copysign(1.0, d) / n if name == "zo-sign" else d / (n * eps)
                for k in self.names:
                    ghat[k] += c * z[k]
            if name == "mezo-adam":
                b1, b2 = self.h.get("betas", (0.9, 0.999))
                self.adam_t += 1
                for k in self.names:
                    self.m[k] = b1 * self.m[k] + (1 - b1) * ghat[k]
                    self.v[k] = b2 * self.v[k] + (1 - b2) * ghat[k] ** 2
                    mhat = self.m[k] / (1 - b1**self.adam_t)
                    vhat = self.v[k] / (1 - b2**self.adam_t)
                    self.theta[k] = self.theta[k] * (1 - lr * wd) - lr * mhat / (vhat.sqrt() + self.h.get("adam_eps", 1e-8))
            elif name == "zo-momentum":
                mu, damp = self.h.get("momentum", 0.9), self.h.get("dampening", 0.0)
                for k in self.names:
                    g = ghat[k] + wd * self.theta[k]
                    self.buf[k] = g if self.t == 0 else mu * self.buf[k] + (1 - damp) * g
                    self.theta[k] = self.theta[k] - lr * self.buf[k]
            elif name == "zo-cons":
                cands = [self.evaluate(self.at({k: sign * lr * ghat[k] for k in self.names}), x, y)
                         for sign in (-1.0, 1.0)]
                best = min(range(3), key=lambda i: ([base, *cands][i], i))
                for k in self.names:
                    self.theta[k] = self.theta[k] + (0.0, -lr, lr)[best] * ghat[k]
            else:
                self.sgd(ghat)
        self.t += 1
