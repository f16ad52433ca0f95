"""`batched`: every point of a step in one forward pass (P-RGE).

P-RGE (Gao et al., "Enabling Efficient On-Device Fine-Tuning of LLMs Using Only Inference
Engines", arXiv 2409.15520) evaluates the 2n points theta +- eps z_j of an n-SPSA step in one
forward over the batch replicated 2n times, replica g running with its own copy of the small
trained tensors (LoRA factors, a head, prefixes). The frozen weights are shared.

Here the replicas are a `torch.func.vmap` dimension: each trained tensor the step perturbs is
stacked into Q = (points) copies, copy q = theta + sum_k c_qk z_k computed by the same chunk code
as the other modes (`perturbed_combination`, so the same bits), and the closure runs once with
`functional_call` handing the module those stacked tensors. The model's own tensors are never
written, so the weights are theta, bit for bit, whatever the closure does; frozen weights and
the batch enter unbatched. The activations grow Q-fold: the mode suits estimators whose trained
tensors are small, as P-RGE's setting is.

The closure must return the loss as a tensor computed through the module (a Python float cannot
carry the replica dimension). Inside the forward the trained tensors are vmap's wrappers: they have no
storage and report requires_grad=False, so code that asks what trains must not rely on that flag (zoo's
frozen-encoder feature cache checks for storage). Random numbers drawn inside the closure (a batch it samples, dropout in
training mode) are drawn once and shared by every point: common random numbers across theta +- eps z,
where sequential evaluation would draw afresh at each point.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .backend import TorchBackend
from .field import DirectionField
from .slots import ParamSlot
from .modes import UntouchedWeights
from .sweeps import Term, perturbed_combination


class ClosureModule(nn.Module):
    """Wraps a zero-argument closure as a module over `model`, so that torch.func.functional_call
    can hand it other parameter tensors while it runs (stacked replicas here, a jvp's duals in
    ZOOptimizer)."""

    def __init__(self, model: nn.Module, closure: Callable):
        super().__init__()
        self.model = model
        self.__dict__["_closure"] = closure  # never a submodule, even when the closure is the model itself

    def forward(self):
        return self._closure()


class BatchedPerturbation(UntouchedWeights):
    """Evaluates the points of a step as one vmapped forward over stacked copies of the trained tensors.

    Args:
        module: the model the closure runs; every trained tensor must be one of its parameters.
        backend, field: the estimator's sweep backend and direction field.
    """

    name = "batched"

    def __init__(self, module: nn.Module, backend: TorchBackend, field: DirectionField):
        self.module = module
        self.backend = backend
        self.field = field
        #: Points the last call evaluated together (rows per forward = this x the batch's rows).
        self.last_points = 0

    def evaluate(self, closure: Callable, terms: Sequence[Term], slots: Sequence[ParamSlot]):
        """One point: the closure at theta + sum_k c_k z_k (a batch of one)."""
        return self.evaluate_many(closure, [terms], slots)[0]

    def evaluate_many(self, closure: Callable, points: Sequence[Sequence[Term]],
                      slots: Sequence[ParamSlot]) -> torch.Tensor:
        """The closure's loss at each of `points` (offsets from theta), from one forward: a tensor [Q]."""
        moved = {uid for terms in points for _, coefs in terms for uid, c in coefs.items() if c != 0.0}
        stacked = {}
        for s in slots:
            if s.uid not in moved:
                continue
            if s.name is None:
                raise ValueError("perturbation='batched': every trained tensor must be a parameter of the model")
            copies = torch.empty((len(points), s.numel), dtype=s.param.dtype, device=s.param.device)
            for q, terms in enumerate(points):
                live = [(key, coefs[s.uid]) for key, coefs in terms if coefs.get(s.uid, 0.0) != 0.0]
                perturbed_combination(self.backend, self.field, s, 0, s.numel, live, copies[q])
            stacked[f"model.{s.name}"] = copies.view(len(points), *s.param.shape)
        wrapper = ClosureModule(self.module, closure)
        self.last_points = len(points)
        if not stacked:  # every point is theta itself
            loss = _loss_tensor(closure())
            return loss.reshape(1).expand(len(points)).clone()

        def one(tensors):
            return _loss_tensor(torch.func.functional_call(wrapper, tensors, ()))

        try:
            losses = torch.func.vmap(one, randomness="same")(stacked)
        except RuntimeError as e:
            if ".item()" in str(e):  # float(loss), loss.item(): the replicas cannot leave as one Python number
                raise ValueError("closure: perturbation='batched' needs the loss as a tensor computed through the "
                                 "model, not a Python number (.item() or float() inside the closure)") from None
            raise
        return losses.reshape(len(points))



def _loss_tensor(loss) -> torch.Tensor:
    if not torch.is_tensor(loss):
        raise ValueError("closure: perturbation='batched' needs the loss as a tensor computed through the model "
                         f"(it carries the replicas), got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"closure: must return a scalar loss, got a tensor of shape {tuple(loss.shape)}")
    return loss.reshape(())
