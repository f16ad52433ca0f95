"""The two ways back from a perturbation: `inplace` and `exact`.

`inplace` (MeZO, Malladi et al. 2023, Algorithm 1) adds eps*z to the weights,
moves to -eps*z, and fuses the way back with the update, so a two-point step
regenerates z three times. Rounding makes the way back inexact: the weights
drift even with lr = 0 (docs/drift.md measures how much).

`exact` never leaves a weight rounded: a forward pre-hook on each module that
owns trainable parameters saves them (a temporary the size of that module's
own parameters), adds the perturbation, and the forward hook copies the saved
values back. Tied weights see the same z because z depends on the parameter,
not on the module. With lr = 0 every weight is bit-identical after any number
of steps. A large stock Linear or Embedding (a tied embedding, an LM head) is
not held whole: its forward is assembled from perturbed copies of one row
block of the weight at a time (blocked.py), so the mode's extra memory is
about one such block or the largest other module, whichever is larger.

`default_perturbation` picks between them when the user does not: `exact` for
half-precision weights, where the way back by subtraction loses whole ulps at
MeZO's eps (docs/drift.md), `inplace` otherwise.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from torch import nn

from .backend import TorchBackend
from .blocked import DEFAULT_BLOCK_ELEMENTS, StreamedModule, block_rows, streamable, streamed_forward
from .field import DirectionField
from .keys import DirectionKey
from .slots import ParamSlot
from .sweeps import Term, apply_, perturbed_combination

logger = logging.getLogger("zoo")


HALF_PRECISION = (torch.float16, torch.bfloat16)


def half_precision_names(tensors: Sequence[torch.Tensor]) -> list[str]:
    """The float16/bfloat16 dtypes among `tensors`, by name ("bfloat16"), sorted; empty if none."""
    return sorted({str(t.dtype).removeprefix("torch.") for t in tensors if t.dtype in HALF_PRECISION})


def default_perturbation(params: Sequence[torch.Tensor], module: nn.Module | None) -> str:
    """The mode an estimator uses when none is asked for.

    `exact` where any trained tensor is float16 or bfloat16 and the model is known (the mode's hooks
    need it); else `inplace`, MeZO's arithmetic, whose rounding drift in float32 is one ulp per sweep.
    Half-precision tensors without the model fall back to `inplace`, with a warning that says how to
    avoid its drift.
    """
    half = half_precision_names(params)
    if not half:
        return "inplace"
    if module is not None:
        return "exact"
    logger.warning(
        "%s weights perturbed in place drift by whole ulps per step (docs/drift.md); pass the nn.Module "
        "(or module=model) so that the default can be perturbation='exact'", "/".join(half))
    return "inplace"


def _negated(terms: Sequence[Term]) -> list[Term]:
    return [(key, {uid: -c for uid, c in coefs.items()}) for key, coefs in terms]


def _slots_of(terms: Sequence[Term], slots: Sequence[ParamSlot]) -> list[ParamSlot]:
    touched = {uid for _, coefs in terms for uid, c in coefs.items() if c != 0.0}
    return [s for s in slots if s.uid in touched]


class InplacePerturbation:
    """MeZO's arithmetic on the weights; tracks the offset currently applied."""

    name = "inplace"

    def __init__(self, backend: TorchBackend, field: DirectionField):
        self.backend = backend
        self.field = field
        self._applied: list[Term] = []
        self._applied_slots: list[ParamSlot] = []

    @property
    def at_theta(self) -> bool:
        return not self._applied

    def evaluate(self, closure: Callable, terms: Sequence[Term], slots: Sequence[ParamSlot]):
        """Moves the weights to theta + sum_k c_k z_k (`terms`), in one sweep, and calls the closure.

        Args:
            terms: the point as an offset from theta (no terms: theta itself).
            slots: every parameter the step may touch (a superset of those the terms and the
                current offset name), so that one sweep moves them all.
        """
        merged = {k: dict(c) for k, c in self.restore_terms()}
        for key, coefs in terms:
            target = merged.setdefault(key, {})
            for uid, c in coefs.items():
                target[uid] = target[uid] + c if uid in target else c
        if any(c != 0.0 for _, coefs in merged.items() for c in coefs.values()):
            apply_(self.backend, self.field, slots, list(merged.items()), at_theta=self.at_theta)
        self._applied = [(key, dict(coefs)) for key, coefs in terms]
        self._applied_slots = list(slots) if self._applied else []
        return closure()

    def restore_terms(self) -> list[Term]:
        """Terms that bring the weights back to theta (up to rounding)."""
        return _negated(self._applied)

    def restore(self) -> None:
        if self._applied:
            apply_(self.backend, self.field, self._applied_slots, self.restore_terms(), at_theta=False)
        self.mark_restored()

    def mark_restored(self) -> None:
        """Called after an update sweep that folded in `restore_terms()`."""
        self._applied = []
        self._applied_slots = []


def _refuse_prompts_read_outside_forward(module: nn.Module) -> None:
    """peft's prompt learning (prompt, prefix, p-tuning) with inference_mode=True reads the prompt's weights
    straight from its embedding (`get_prompt`), not through any module's forward, so hooks never see them."""
    configs, active = getattr(module, "peft_config", None), getattr(module, "active_adapter", None)
    config = configs.get(active) if isinstance(configs, dict) and isinstance(active, str) else None
    if getattr(config, "is_prompt_learning", False) and getattr(config, "inference_mode", False):
        raise ValueError("perturbation='exact': this peft model was built with inference_mode=True, so peft reads "
                         "its prompt weights outside any module's forward and the exact perturbation would never "
                         "perturb them; build it with inference_mode=False (zoo's --tuning prompt/prefix do), or "
                         "use perturbation='inplace'")


class UntouchedWeights:
    """A mode that never leaves the live weights moved: there is no way back to take."""

    at_theta = True

    def restore_terms(self) -> list[Term]:
        return []

    def restore(self) -> None:
        pass

    def mark_restored(self) -> None:
        pass


class ExactPerturbation(UntouchedWeights):
    """Perturbs each module's own parameters only while that module runs forward.

    Args:
        module: the model; hooks go on every submodule that directly owns a
            trainable parameter of the optimizer.
        block_elements: a stock `nn.Linear` or `nn.Embedding` whose trained weight
            is larger than this is never written: its forward is assembled from
            perturbed copies of row blocks of about this many elements
            (blocked.py). 0 holds every module aside whole.
    """

    name = "exact"

    def __init__(
        self,
        module: nn.Module,
        backend: TorchBackend,
        field: DirectionField,
        slots: Sequence[ParamSlot],
        block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    ):
        if block_elements < 0:
            raise ValueError(f"block_elements must be >= 0 (0: hold every module whole), got {block_elements}")
        _refuse_prompts_read_outside_forward(module)
        self.module = module
        self.backend = backend
        self.field = field
        self.block_elements = block_elements
        self.set_slots(slots)
        self._warned_unused = False
        #: Largest number of parameter bytes held aside at once (the mode's extra memory).
        self.peak_saved_bytes = 0

    def set_slots(self, slots: Sequence[ParamSlot]) -> None:
        by_id = {id(s.param): s for s in slots}
        self._owners: list[tuple[nn.Module, list[ParamSlot]]] = []
        self._streamed: list[StreamedModule] = []
        for mod in self.module.modules():
            own = [by_id[id(p)] for p in mod.parameters(recurse=False) if id(p) in by_id]
            if not own:
                continue
            spec = self._stream_spec(mod, own)
            if spec is not None:
                self._streamed.append(spec)
            else:
                self._owners.append((mod, own))
        #: The most parameter bytes the mode can hold aside at once: the largest module held
        #: whole, or the largest streamed block (with its module's other trained parameters).
        self.bound_bytes = max(
            [sum(s.numel * s.param.element_size() for s in own) for _, own in self._owners]
            + [spec.block_bytes for spec in self._streamed],
            default=0,
        )

    def _stream_spec(self, mod: nn.Module, own: list[ParamSlot]) -> StreamedModule | None:
        if not self.block_elements or not streamable(mod):
            return None
        weight = next((s for s in own if s.param is mod.weight), None)
        if weight is None:
            return None
        rows = block_rows(mod.weight.shape[1], mod.weight.shape[0], self.block_elements)
        if rows is None:
            return None
        return StreamedModule(mod, weight, [s for s in own if s is not weight], rows)

    def evaluate(self, closure: Callable, terms: Sequence[Term], slots: Sequence[ParamSlot]):
        """Calls the closure with every module's own parameters at theta + sum_k c_k z_k while it runs.

        Args:
            terms: the point as an offset from theta (no terms: theta, and no hook is installed).
            slots: the parameters the step may touch.
        """
        terms = [(key, coefs) for key, coefs in terms if any(c != 0.0 for c in coefs.values())]
        if not terms:
            return closure()
        slots = _slots_of(terms, slots)
        active = {s.uid for s in slots}
        saved: dict[int, torch.Tensor] = {}
        depth: dict[int, int] = {}
        touched: set[int] = set()

        def held_now() -> int:
            return sum(t.numel() * t.element_size() for t in saved.values())

        def note_held(extra: int) -> None:
            self.peak_saved_bytes = max(self.peak_saved_bytes, held_now() + extra)

        def pre_hook(mod, args, own):
            enter = [s for s in own if s.uid in active and depth.get(s.uid, 0) == 0]
            for s in own:
                if s.uid in active:
                    depth[s.uid] = depth.get(s.uid, 0) + 1
            for s in enter:
                saved[s.uid] = s.param.detach().clone()
            note_held(0)
            if enter:
                apply_(self.backend, self.field, enter, terms, at_theta=True)
                touched.update(s.uid for s in enter)

        def post_hook(mod, own):
            for s in own:
                if s.uid in active:
                    depth[s.uid] -= 1
                    if depth[s.uid] == 0:
                        s.param.detach().copy_(saved.pop(s.uid))

        def live(s: ParamSlot) -> bool:
            # A tied weight another module holds perturbed in place right now is read as it is.
            return s.uid in active and depth.get(s.uid, 0) == 0

        def perturbed(s: ParamSlot, start: int, stop: int, out: torch.Tensor | None) -> torch.Tensor:
            if not live(s):
                return s.flat()[start:stop]
            touched.add(s.uid)
            live_terms = [(key, coefs[s.uid]) for key, coefs in terms if coefs.get(s.uid, 0.0) != 0.0]
            return perturbed_combination(self.backend, self.field, s, start, stop, live_terms, out)

        def streamed(spec: StreamedModule):
            blocked = streamed_forward(spec, perturbed, note_held)
            stock = type(spec.module).forward.__get__(spec.module)

            def forward(*args, **kwargs):
                if any(live(s) for s in [spec.weight, *spec.extra]):
                    return blocked(*args, **kwargs)
                return stock(*args, **kwargs)

            return forward

        handles, installed = [], []
        try:
            for mod, own in self._owners:
                handles.append(mod.register_forward_pre_hook(lambda m, a, own=own: pre_hook(m, a, own)))
                handles.append(
                    mod.register_forward_hook(lambda m, a, o, own=own: post_hook(m, own), always_call=True)
                )
            for spec in self._streamed:
                spec.module.forward = streamed(spec)
                installed.append(spec.module)
            loss = closure()
        finally:
            for h in handles:
                h.remove()
            for mod in installed:
                del mod.forward
            for s in slots:
                if s.uid in saved:
                    s.param.detach().copy_(saved.pop(s.uid))
        self._warn_unused(slots, touched)
        return loss

    def _warn_unused(self, slots: Sequence[ParamSlot], touched: set[int]) -> None:
        missed = [s.name or f"uid {s.uid}" for s in slots if s.uid not in touched]
        if missed and not self._warned_unused:
            self._warned_unused = True
            logger.warning(
                "perturbation='exact': %d parameter(s) were not used inside their module's forward, so the "
                "loss did not see their perturbation (unused, or read outside forward): %s",
                len(missed),
                ", ".join(missed[:8]) + (" ..." if len(missed) > 8 else ""),
            )

