"""Hessian-vector products of a model's loss, as a flat-vector operator.

HessianOperator(model, loss_fn, batch)(v) = H v, where H is the Hessian of
loss_fn(model, batch) with respect to the chosen parameters, flattened in
their order. Three ways to compute it:

- "rev-rev": reverse-over-reverse (Pearlmutter 1994): grad of (grad . v). The
  first backward's graph (built with create_graph=True) is kept and reused, so
  each further H v costs one double-backward pass and no forward: the trick
  PyHessian uses. The operator is then frozen at the weights it first saw; call
  `refresh()` after changing them (or pass keep_graph=False).
- "fwd-rev": forward-over-reverse: the JVP of the gradient (torch.func).
- "fd": central finite differences of gradients, (g(θ+hv) - g(θ-hv)) / 2h.

Notes for HF models: double backward through SDPA is not implemented on the
CPU, so load them with attn_implementation="eager". An nn.Embedding with a
padding_idx zeroes the gradient of the padding row while its forward still reads
that row, so the autograd "Hessian" there is not the Hessian of the loss and
can be asymmetric; the padding rows are removed from the space (v and H v are
zeroed there), which keeps the operator symmetric. (On torch 2.13 and a tiny
model we measured no asymmetry; the removal costs nothing either way.)
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

MODES = ("rev-rev", "fwd-rev", "fd")


class HessianOperator:
    """H v for a model's loss on one batch.

    Args:
        model: the nn.Module.
        loss_fn: callable(model, batch) -> scalar loss tensor.
        batch: passed to loss_fn unchanged.
        params: the parameters to differentiate (default: all with requires_grad).
        mode: "rev-rev" (default), "fwd-rev" or "fd".
        fd_step: h for "fd".
        keep_graph: for "rev-rev", keep the gradient's graph between products (faster, holds the
            graph's activations in memory); False rebuilds it for every product.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, batch, params: Sequence[torch.Tensor] | None = None,
                 mode: str = "rev-rev", fd_step: float = 1e-3, keep_graph: bool = True):
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")
        self.model, self.loss_fn, self.batch, self.mode, self.fd_step = model, loss_fn, batch, mode, fd_step
        self.params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("params: no parameter to differentiate")
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.dim = sum(p.numel() for p in self.params)
        self.matvecs = 0
        self.keep_graph = keep_graph
        self._grads = None  # (parameter versions, gradient with its graph) while keep_graph
        self._mask = self._padding_mask()

    def refresh(self) -> None:
        """Drops the kept gradient graph, so the next product sees the current weights."""
        self._grads = None

    def _padding_mask(self) -> torch.Tensor | None:
        masks, any_pad = [], False
        owners = {id(m.weight): m for m in self.model.modules() if isinstance(m, nn.Embedding)}
        for p in self.params:
            m = torch.ones(p.shape, dtype=torch.float64)
            emb = owners.get(id(p))
            if emb is not None and emb.padding_idx is not None:
                m[emb.padding_idx] = 0.0
                any_pad = True
            masks.append(m.view(-1))
        return torch.cat(masks) if any_pad else None

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        out, i = [], 0
        for p in self.params:
            out.append(v[i : i + p.numel()].view_as(p).to(p.dtype))
            i += p.numel()
        return out

    def _loss(self):
        return self.loss_fn(self.model, self.batch)

    def _flat(self, grads) -> torch.Tensor:
        """Per-parameter grads as one float64 vector; an unused parameter contributes zeros."""
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).double()
                          for g, p in zip(grads, self.params)])

    def gradient(self) -> torch.Tensor:
        with torch.enable_grad():
            return self._flat(torch.autograd.grad(self._loss(), self.params, allow_unused=True))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        v = v.to(torch.float64)
        if self._mask is not None:
            v = v * self._mask
        self.matvecs += 1
        hv = getattr(self, "_" + self.mode.replace("-", "_"))(v)
        return hv * self._mask if self._mask is not None else hv

    def _gradient_with_graph(self):
        versions = tuple(p._version for p in self.params)
        if self._grads is None or self._grads[0] != versions:
            self._grads = None  # the old graph is freed before the next is built
            with torch.enable_grad():
                grads = torch.autograd.grad(self._loss(), self.params, create_graph=True, allow_unused=True)
            self._grads = (versions, grads)
        return self._grads[1]

    def _rev_rev(self, v):
        if not self.keep_graph:
            self._grads = None
        grads = self._gradient_with_graph()
        used = [(g, p, t) for g, p, t in zip(grads, self.params, self._split(v)) if g is not None]
        with torch.enable_grad():
            hv = torch.autograd.grad([g for g, _, _ in used], [p for _, p, _ in used],
                                     grad_outputs=[t for _, _, t in used], retain_graph=self.keep_graph,
                                     allow_unused=True)
        if not self.keep_graph:
            self._grads = None
        out = iter(hv)
        return self._flat([next(out) if g is not None else None for g in grads])

    def _fwd_rev(self, v):
        from torch.func import functional_call, grad, jvp

        names = [self.names[id(p)] for p in self.params]
        frozen = {n: t for n, t in self.model.named_parameters() if id(t) not in {id(p) for p in self.params}}
        frozen.update(dict(self.model.named_buffers()))

        def loss_of(*tensors):
            call = lambda batch: functional_call(self.model, {**frozen, **dict(zip(names, tensors))}, args=(),
                                                 kwargs=batch)
            return self.loss_fn(_Functional(call), self.batch)

        primals = tuple(p.detach() for p in self.params)
        _, tangent = jvp(grad(loss_of, argnums=tuple(range(len(primals)))), primals, tuple(self._split(v)))
        return torch.cat([t.reshape(-1).double() for t in tangent])

    @torch.no_grad()
    def _fd(self, v):
        h = self.fd_step / max(v.norm().item(), 1e-30)
        parts = self._split(v)
        saved = [p.detach().clone() for p in self.params]
        try:
            for p, s, t in zip(self.params, saved, parts):
                torch.add(s, t, alpha=h, out=p.data)
            g_plus = self.gradient()
            for p, s, t in zip(self.params, saved, parts):
                torch.add(s, t, alpha=-h, out=p.data)
            g_minus = self.gradient()
        finally:  # the weights come back bit for bit
            for p, s in zip(self.params, saved):
                p.data.copy_(s)
        return (g_plus - g_minus) / (2 * h)


class _Functional:
    """Stands in for the model inside torch.func: called with the batch's keyword arguments."""

    def __init__(self, call):
        self._call = call

    def __call__(self, *args, **kwargs):
        if args:
            raise TypeError("with mode='fwd-rev', loss_fn must call the model with keyword arguments only")
        return self._call(kwargs)
