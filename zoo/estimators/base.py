"""ZOOptimizer: the shared machinery of every zoo estimator.

A step of an estimator with n directions (MeZO, Malladi et al. 2023,
Algorithms 1 and 2):

    for j = 1..n:   d_j = (L(theta + eps z_j) - L(theta - eps z_j)) / 2
    g_hat = (1/n) sum_j (d_j / eps) z_j
    theta <- rule(theta, g_hat)

z_j is regenerated from (step seed, j, parameter uid, element index) on every
sweep and never stored. The pieces that vary between estimators are a
direction field (sampler, masks, subspace), an update rule, and how the
weights come back from a perturbation (`inplace` or `exact`).
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.optim import Optimizer

from ..perturb.batched import ClosureModule
from ..perturb.blocked import DEFAULT_BLOCK_ELEMENTS
from ..perturb import (
    DirectionField,
    DirectionKey,
    BatchedPerturbation,
    ExactPerturbation,
    InplacePerturbation,
    ParamSlot,
    default_perturbation,
    make_backend,
    measure_sphere_scale,
    step_seed,
)
from .plans import Query, QueryPlan, TwoPointPlan
from .rules import UpdateRule
from ..perturb.shards import fsdp_modules, is_sharded, local_shard
from .distributed import resolve as resolve_distributed
from .schedule import QuerySchedule
from ..validation import number

logger = logging.getLogger("zoo")

PERTURBATIONS = ("inplace", "exact", "batched")


#: eps at or above this is legal but moves a weight of typical scale (|w| ~ 0.02-1) beyond itself:
#: the two losses then measure other models, not a derivative
SUSPICIOUS_EPS = 1.0


def _check_hyper(group: dict) -> None:
    """Refuses a group whose lr, eps or weight_decay is not a finite number in range (bools included)."""
    number("lr", group.get("lr"), minimum=0.0)
    number("eps", group.get("eps"), minimum=0.0, strict=True, what="the perturbation scale")
    number("weight_decay", group.get("weight_decay", 0.0), minimum=0.0)


def _warn_suspicious(group: dict) -> None:
    if float(group["eps"]) >= SUSPICIOUS_EPS:
        logger.warning("zoo: eps=%g perturbs each weight by about eps itself, so the two losses are of other models "
                       "and their difference says little about the gradient (MeZO uses 1e-3)", float(group["eps"]))


def _split_inputs(model_or_params, module: nn.Module | None):
    if isinstance(model_or_params, nn.Module):
        module = model_or_params
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model_or_params: the module has no parameter with requires_grad=True")
        return module, params
    if isinstance(model_or_params, torch.Tensor):
        raise ValueError("model_or_params: pass an nn.Module or an iterable of tensors/param groups, not one tensor")
    params = list(model_or_params)
    if not params:
        raise ValueError("model_or_params: got an empty parameter list")
    return module, params


def repeated_blocks(module: nn.Module) -> nn.ModuleList | None:
    """The model's repeated blocks, its largest ModuleList (Llama's model.layers, BERT's encoder.layer),
    or None where it has none."""
    lists = [m for m in module.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    return max(lists, key=lambda m: (len(m), sum(p.numel() for p in m.parameters()))) if lists else None


def _layer_index(module: nn.Module) -> dict[int, int]:
    """Maps id(param) to the index of its repeated block."""
    blocks = repeated_blocks(module)
    return {} if blocks is None else {id(p): i for i, block in enumerate(blocks) for p in block.parameters()}


def saved_stream(state_dict: dict) -> str:
    """The noise stream a ZO estimator's state_dict was drawn from.

    A state_dict that names none predates the philox stream, when torch-generator was zoo's only one.
    """
    return state_dict["zo"].get("stream", "torch-generator")


class ZOOptimizer(Optimizer):
    """Base class of zoo's zeroth-order estimators (a torch.optim.Optimizer).

    Args:
        model_or_params: an nn.Module (its trainable parameters are optimized),
            an iterable of tensors, or an iterable of param-group dicts.
        defaults: per-group hyper-parameters (lr, eps, weight_decay, ...).
        rule: the update rule.
        n: directions per step (n-SPSA): 2n forward passes per step with the
            two-point plan.
        plan: the query plan (plans.py): a QueryPlan, or a callable that builds
            one from n (or the query schedule); default MeZO's TwoPointPlan.
        query_schedule: AdaZeta's n(step) (a QuerySchedule or a dict of its
            arguments) instead of a fixed n, for plans with n directions.
        seed: base seed; with it, the whole trajectory is reproducible.
        sampler: `gaussian` (default), `rademacher` or `sphere`.
        perturbation: `inplace`, `exact` (needs the module) or `batched` (needs the
            module: every point of a step in one vmapped forward over stacked copies
            of the trained tensors, P-RGE; zoo/perturb/batched.py); by default
            `exact` for float16/bfloat16 parameters of a known module, else
            `inplace` (`zoo.perturb.default_perturbation`).
        backend: `auto` (default: `cpu` for CPU parameters where the C kernel
            builds, `triton` for GPU parameters where Triton is installed,
            else `torch`), `torch` (torch generators), `cpu` or `triton`
            (the same Philox stream on either device).
        chunk_size: elements per sweep chunk (scratch memory, not results);
            default the backend's (2^17 on the CPU, 2^24 for Triton).
        threads: sweep worker threads on the CPU.
        module: the model, when model_or_params are param groups and
            perturbation='exact' is wanted.
        exact_block: in exact mode, a stock Linear or Embedding whose trained
            weight has more elements than this runs forward from perturbed
            copies of row blocks of about this size instead of being held
            aside whole (memory, not results); 0 holds every module whole.
        layers: a LayerSubset (LeZO), magnitude: a MagnitudeMask (Sparse MeZO),
            subspace: a LowRankSubspace (SubZero): the direction field's pieces.
        distributed: None (default): data-parallel when torch.distributed runs more than one rank
            (each rank evaluates the closure on its shard of the batch; every loss is the ranks'
            mean, all-reduced as one float64; the replicas stay bit-identical); False: one process
            even under torchrun; "data": data-parallel, an error without a process group
            (zoo/estimators/distributed.py).
        distributed_timeout: seconds a rank waits for the others at a reduction before it raises
            (with its weights restored) instead of hanging on a rank that failed.
    """

    #: Whether the estimator moves the weights to evaluate its points (forward-grad does not).
    perturbs_weights = True
    #: The name the registry built it under (`zoo.get` sets it), recorded in the state_dict.
    registry_name: str | None = None

    def __init__(
        self,
        model_or_params,
        defaults: dict,
        *,
        rule: UpdateRule,
        n: int = 1,
        plan=TwoPointPlan,
        query_schedule=None,
        seed: int = 0,
        sampler="gaussian",
        perturbation: str | None = None,
        backend="auto",
        chunk_size: int | None = None,
        threads: int | None = None,
        module: nn.Module | None = None,
        exact_block: int = DEFAULT_BLOCK_ELEMENTS,
        layers=None,
        magnitude=None,
        subspace=None,
        distributed=None,
        distributed_timeout: float = 300.0,
    ):
        _check_hyper(defaults)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n: the number of directions per step must be an integer >= 1, got {n!r}")
        if not isinstance(exact_block, int) or isinstance(exact_block, bool) or exact_block < 0:
            raise ValueError(f"exact_block: elements per streamed block must be an integer >= 0, got {exact_block!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed: must be an integer, got {seed!r}")
        if perturbation is not None and perturbation not in PERTURBATIONS:
            raise ValueError(f"perturbation: must be one of {PERTURBATIONS}, got {perturbation!r}")
        module, params = _split_inputs(model_or_params, module)
        if perturbation in ("exact", "batched") and module is None:
            raise ValueError(
                f"perturbation={perturbation!r} needs the model: pass the nn.Module as model_or_params "
                "(or module=model with param groups), not a parameter list"
            )
        if perturbation == "batched" and not self.perturbs_weights:
            raise ValueError(f"perturbation='batched': {type(self).__name__} evaluates no perturbed points")
        self._ready = False
        schedule = QuerySchedule.coerce(query_schedule)
        if isinstance(plan, QueryPlan):
            if schedule is not None or n != 1:
                raise ValueError(f"n, query_schedule: the {plan.name} plan fixes its own directions per step")
        else:
            plan = plan(schedule if schedule is not None else n)
        self.plan = plan
        self._replaying = False
        self.last_record: list[float] = []
        super().__init__(params, defaults)
        self.module = module
        self.n = plan.n
        self.rule = rule
        device = next((p.device for g in self.param_groups for p in g["params"]), None)
        self.backend = make_backend(backend, device=device, chunk_size=chunk_size, threads=threads)
        number("distributed_timeout", distributed_timeout, minimum=0.0, strict=True)
        self.reducer = resolve_distributed(distributed)
        if self.reducer is not None:
            self.reducer.timeout = float(distributed_timeout)
            self.reducer.check_same(seed, "seed")
            if self.reducer.mode == "directions":
                if perturbation in ("inplace", "batched"):
                    raise ValueError("distributed='directions' needs perturbation='exact': ranks that perturb "
                                     "along different directions in place round differently and drift apart")
                perturbation = "exact"  # every rank's weights stay theta bit for bit between its queries
        self.field = DirectionField(
            sampler, layers=layers, magnitude=magnitude, subspace=subspace, stream=self.backend.stream,
            preconditioner=rule.make_preconditioner(self),
        )
        #: forward_passes counts model calls; queries the points they evaluated (equal unless batched)
        self.zo_state = {"seed": seed, "step": 0, "skipped_steps": 0, "forward_passes": 0, "queries": 0}
        self._build_slots()
        if perturbation is None:
            perturbation = default_perturbation([s.param for s in self._slots], module)
        if perturbation == "exact":
            self.perturbation = ExactPerturbation(module, self.backend, self.field, self._slots, exact_block)
        elif perturbation == "batched":
            self.perturbation = BatchedPerturbation(module, self.backend, self.field)
        else:
            self.perturbation = InplacePerturbation(self.backend, self.field)
        self._check_shards()
        self._ready = True

    # -- parameters -------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _check_hyper(group)
            if len({id(p) for p in group["params"]}) != len(group["params"]):
                # torch.optim only warns; a duplicate would be perturbed and updated twice a step
                raise ValueError("params: a parameter appears more than once in the group")
            self.plan.check_group(group)
        except ValueError:
            self.param_groups.pop()  # a refused group leaves the estimator as it was
            raise
        _warn_suspicious(group)
        for p in group["params"]:
            if not p.is_floating_point():
                raise ValueError(f"params: ZO estimators need floating-point parameters, got {p.dtype}")
            if not p.is_contiguous():
                raise ValueError("params: parameters must be contiguous (z is indexed by flat element position)")
        if getattr(self, "_ready", False):
            self._build_slots()

    def _build_slots(self) -> None:
        names, layers = {}, {}
        if self.module is not None:
            names = {id(p): n for n, p in self.module.named_parameters()}
            layers = _layer_index(self.module)
        self._slots = []
        for uid, (p, group) in enumerate((p, g) for g in self.param_groups for p in g["params"]):
            slot = ParamSlot(uid, p, group, names.get(id(p)), layers.get(id(p)))
            if is_sharded(p):  # FSDP2: this rank's shard, keyed by its elements' global indices
                local, offset = local_shard(p)
                slot = ParamSlot(uid, local, group, slot.name, slot.layer, owner=p, offset=offset)
            self._slots.append(slot)
        if getattr(self, "perturbation", None) is not None and isinstance(self.perturbation, ExactPerturbation):
            self.perturbation.set_slots(self._slots)

    def _check_shards(self) -> None:
        """Refuses what cannot run on sharded parameters, and finds the FSDP modules to reshard."""
        sharded = [s for s in self._slots if s.sharded]
        self._fsdp = fsdp_modules(self.module) if sharded else []
        if not sharded:
            return
        name = sharded[0].name or f"parameter {sharded[0].uid}"
        why = None
        if self.perturbation.name in ("exact", "batched"):
            why = (f"perturbation={self.perturbation.name!r} perturbs copies of whole tensors as the model runs, "
                   "but FSDP gathers them from the shards; use perturbation='inplace' (float32 shards)")
        elif self.field.magnitude is not None:
            why = "Sparse MeZO's magnitude masks take thresholds over the whole parameter, which no rank holds"
        elif self.field.subspace is not None:
            why = "a low-rank subspace (SubZero, LOZO) needs each matrix whole"
        elif self.field.needs_norm:
            why = "sphere directions are normalised over the whole of z, which no rank holds"
        elif not self.perturbs_weights:
            why = "forward gradients run the model functionally on whole parameters"
        if why:
            raise ValueError(f"params: {name} is sharded (FSDP2/DTensor): {why}")
        if self.module is None:
            raise ValueError("params: sharded (FSDP2) parameters need the model (pass the module), so that its "
                             "FSDP modules are resharded after each forward and see the next perturbation")

    def _reshard(self) -> None:
        # FSDP2 leaves the root's parameters gathered after a forward: the next forward would not gather
        # the perturbed shards again. Resharding after every closure keeps each forward on the shards.
        for m in self._fsdp:
            m.reshard()

    @property
    def slots(self) -> list[ParamSlot]:
        return list(self._slots)

    # -- the step ---------------------------------------------------------------
    def _call(self, closure: Callable) -> float:
        try:
            loss = closure()
        finally:
            self._reshard()
        self.zo_state["forward_passes"] += 1
        self.zo_state["queries"] += 1
        return self._reduced([self._scalar(loss)])[0]

    def _call_batched(self, closure: Callable, queries: list[Query], slots) -> list[float]:
        """The losses of `queries` (loss queries on one batch and base) from one batched forward."""
        if self._replaying:  # the record holds each point's loss
            values = [self._scalar(closure()) for _ in queries]
        else:
            try:
                losses = self.perturbation.evaluate_many(closure, [q.terms for q in queries], slots)
            finally:
                self._reshard()
            values = [float(v) for v in losses.detach().double().tolist()]
        self.zo_state["forward_passes"] += 1
        self.zo_state["queries"] += len(queries)
        return self._reduced(values)

    def _reduced(self, values: list[float]) -> list[float]:
        """The ranks' mean of this rank's `values` when data-parallel (a replay's values are already
        the means); else `values`."""
        if self.reducer is None or self._replaying:
            return values
        return self.reducer.mean(values, f"step {self.zo_state['step']}'s loss")

    @staticmethod
    def _scalar(loss) -> float:
        if torch.is_tensor(loss):
            if loss.numel() != 1:
                raise ValueError(f"closure: must return a scalar loss, got a tensor of shape {tuple(loss.shape)}")
            return float(loss.detach().reshape(()).item())
        if isinstance(loss, (int, float)) and not isinstance(loss, bool):
            return float(loss)
        raise ValueError(f"closure: must return a scalar loss tensor or float, got {type(loss).__name__}")

    def _begin(self) -> tuple[list[ParamSlot], list[DirectionKey]]:
        zs = self.zo_state
        seed = step_seed(zs["seed"], zs["step"])
        self.field.begin_step(
            self._slots,
            base_seed=zs["seed"],
            step=zs["step"],
            step_seed=seed,
            cache_masks=self.perturbation.name == "inplace",
        )
        slots = self.field.active_slots(self._slots)
        if self.field.preconditioner is not None:
            self.field.preconditioner.prepare(self._slots)
        return slots, self.plan.keys(seed, zs["step"], slots)

    def _measure_scales(self, query: Query, slots) -> None:
        if not self.field.needs_norm:
            return
        for key, _ in query.terms:
            if not self.field.has_scale(key):
                self.field.set_scale(
                    key,
                    measure_sphere_scale(self.backend, self.field, slots, key, at_theta=self.perturbation.at_theta),
                )

    def _move_to(self, base: str, slots) -> None:
        """Makes `base` ("theta" or "anchor") the live weights (the plan swaps them with its anchor)."""
        if base != self._base:
            self.perturbation.restore()
            self.plan.swap(self, slots)
            self._base = base

    def _jvp(self, closure: Callable, query: Query, slots) -> tuple[float, float]:
        """(L(theta), grad L . z) by one forward-mode pass; the tangent is z of the query's key."""
        if self._replaying:  # the step's record holds both floats (only the loss where it is non-finite)
            loss = self._scalar(closure())
            return (loss, self._scalar(closure())) if math.isfinite(loss) else (loss, math.nan)
        if self.module is None:
            raise ValueError("forward gradients need the model: pass the nn.Module as model_or_params")
        from torch.autograd import forward_ad
        from torch.nn.attention import SDPBackend, sdpa_kernel

        key = query.terms[0][0]
        # the fused attention kernels have no forward-mode derivative; SDPA's math backend is plain ops
        with forward_ad.dual_level(), sdpa_kernel([SDPBackend.MATH]):
            duals = {s.name: forward_ad.make_dual(
                s.param.detach(), self.field.materialize(s, key).to(s.param.dtype)) for s in slots}
            loss = torch.func.functional_call(ClosureModule(self.module, closure),
                                              {f"model.{n}": t for n, t in duals.items()}, ())
            if not torch.is_tensor(loss):
                raise ValueError("closure: forward gradients need the closure to return the loss as a tensor")
            primal, tangent = forward_ad.unpack_dual(loss)
            primal = self._scalar(primal)
            if tangent is None:
                if not math.isfinite(primal):
                    return primal, math.nan
                raise ValueError("closure: the loss has no forward-mode derivative: it must read the trained "
                                 "parameters through the module (model(...) or module.weight), not through "
                                 "references to the tensors taken before the step")
            return primal, self._scalar(tangent)

    def _run(self, queries, closure, full_closure, slots, record, losses) -> list[float] | None:
        """Evaluates the queries in order; their values, or None at the first non-finite one."""
        if self.reducer is not None and self.reducer.mode == "directions" and not self._replaying:
            return self._run_split(queries, closure, slots, record, losses)
        if self.perturbation.name == "batched":
            return self._run_batched(queries, closure, full_closure, slots, record, losses)
        values = []
        for query in queries:
            fn = full_closure if query.batch == "full" else closure
            self._measure_scales(query, slots)
            self._move_to(query.base, slots)
            if query.kind == "jvp":
                loss, derivative = self._reduced(list(self._jvp(fn, query, slots)))
                self.zo_state["forward_passes"] += 1
                self.zo_state["queries"] += 1
                record += [loss, derivative] if math.isfinite(loss) else [loss]
                losses.append(loss)
                value = derivative if math.isfinite(loss) else loss
            else:
                value = self._call(lambda: self.perturbation.evaluate(fn, query.terms, slots))
                record.append(value)
                losses.append(value)
            if not math.isfinite(value):
                return None
            values.append(value)
        self._move_to("theta", slots)
        return values

    def _run_batched(self, queries, closure, full_closure, slots, record, losses) -> list[float] | None:
        """`_run` with each run of consecutive queries on one batch and base evaluated by one forward."""
        values, i = [], 0
        while i < len(queries):
            batch, base = queries[i].batch, queries[i].base
            group = []
            while i < len(queries) and (queries[i].batch, queries[i].base) == (batch, base):
                group.append(queries[i])
                self._measure_scales(queries[i], slots)
                i += 1
            self._move_to(base, slots)
            got = self._call_batched(full_closure if batch == "full" else closure, group, slots)
            bad = next((j for j, v in enumerate(got) if not math.isfinite(v)), None)
            kept = got if bad is None else got[: bad + 1]
            record += kept
            losses += kept
            if bad is not None:
                return None
            values += got
        self._move_to("theta", slots)
        return values

    def _run_split(self, queries, closure, slots, record, losses) -> list[float] | None:
        """`_run` with the directions split among the ranks: this rank evaluates the queries of its own
        directions (key index mod world), then one all-reduce gives every rank every value."""
        rank, world = self.reducer.rank, self.reducer.world
        values = []
        for query in queries:
            if query.kind != "loss" or query.base != "theta" or query.batch != "step":
                raise ValueError(f"distributed='directions': the {self.plan.name} plan evaluates a "
                                 f"{query.kind} query at its {query.base} on the {query.batch} batch; only "
                                 "loss queries at theta on the step's batch can be split among ranks")
            owner = (query.terms[0][0].index if query.terms else 0) % world
            if owner == rank:
                self._measure_scales(query, slots)
                values.append(self._scalar(self.perturbation.evaluate(closure, query.terms, slots)))
            else:
                values.append(0.0)
        values = self.reducer.sum(values, f"step {self.zo_state['step']}'s losses")
        self.zo_state["forward_passes"] += len(values)  # the step's forwards, on all ranks together
        self.zo_state["queries"] += len(values)
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        kept = values if bad is None else values[: bad + 1]
        record += kept
        losses += kept
        return None if bad is not None else values

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor | float], full_closure: Callable | None = None) -> torch.Tensor:
        """Performs one ZO step.

        Args:
            closure: computes the loss with forward passes only (no backward)
                and returns it as a scalar tensor or float. It is called once per
                query of the step's plan (2n times for MeZO's two-point plan),
                under torch.no_grad(), each time at different weights. It should
                evaluate the same minibatch every time within a step.
            full_closure: the loss on a larger batch, for plans that evaluate one
                (MeZO-SVRG's full-batch anchor steps). With none given, `closure`
                serves for both: the "full batch" is then the step's minibatch,
                so SVRG's anchor gradient is a minibatch estimate.

        Returns:
            The mean of the losses the step evaluated (float64 scalar tensor),
            NaN when the step was skipped.

        A non-finite loss skips the step: the weights go back to where they
        were, `zo_state['skipped_steps']` goes up and a warning is logged. If
        the closure raises (or the step is interrupted), the weights are
        restored and the step counter is left where it was, so the step can be
        run again; then the exception propagates.
        """
        if closure is None or not callable(closure):
            raise ValueError("closure: ZO estimators need a closure that returns the loss")
        if full_closure is not None and not callable(full_closure):
            raise ValueError("full_closure: must be callable (or None: the closure serves for both batches)")
        for i, group in enumerate(self.param_groups):  # an LR scheduler writes param_groups between steps
            try:
                _check_hyper(group)
            except ValueError as e:
                raise ValueError(f"param_groups[{i}] {e}; the step was not taken") from None
        full_closure = full_closure or closure
        counters = dict(self.zo_state)
        slots, keys = self._begin()
        record, losses = [], []
        self._base = "theta"
        try:
            values = self._run(self.plan.queries(self, slots, keys), closure, full_closure, slots, record, losses)
            estimate = None
            if values is not None:
                estimate = self.plan.estimate(self, slots, keys, values)
                candidates = self.plan.candidates(self, slots, estimate)
                if candidates:
                    more = self._run(candidates, closure, full_closure, slots, record, losses)
                    estimate = None if more is None else self.plan.choose(self, slots, estimate, values, more)
            self.last_record = record
            if estimate is None:
                self.perturbation.restore()
                self._move_to("theta", slots)
                self.plan.skipped(self, slots, keys)
                self.zo_state["skipped_steps"] += 1
                logger.warning(
                    "zoo: step %d skipped: the closure returned a non-finite loss (%s); weights restored",
                    self.zo_state["step"],
                    losses[-1],
                )
                return torch.tensor(float("nan"), dtype=torch.float64)
            self.plan.before_update(self, slots, estimate)
            if slots:
                self.rule.apply(self, slots, estimate, self.perturbation.restore_terms(), self.perturbation.at_theta)
            self.perturbation.mark_restored()
            self.plan.after_update(self, slots, keys, estimate)
            return torch.tensor(math.fsum(losses) / len(losses), dtype=torch.float64)
        except BaseException:
            self.perturbation.restore()
            if self._base != "theta":
                self.plan.swap(self, slots)
                self._base = "theta"
            self.zo_state.update(counters)
            counters = None
            raise
        finally:
            self.field.end_step()
            if counters is not None:
                self.zo_state["step"] += 1

    @torch.no_grad()
    def replay(self, losses: Sequence[float]) -> torch.Tensor:
        """Re-applies a step from the losses its closure returned, with no forward pass.

        A ZO step is a function of the weights, the step's seed and the
        losses of its queries alone, so feeding the recorded losses back
        through `step` repeats every sweep (perturbation, way back, update,
        rule state such as Adam's moments) and leaves the weights
        bit-identical to the original step. A run is thereby stored as its
        initial weights plus a few floats per step (MeZO, Malladi et al.
        2023, Appendix on storage efficiency), and resumes from that log
        wherever the initial weights can be rebuilt.

        Args:
            losses: the step's record (`last_record` after the step): the
                floats its queries returned, in order, on both batches (for a
                jvp query, the loss and the directional derivative); a skipped
                step's list ends at its non-finite value.

        Raises:
            ValueError: when `losses` is not as long as the step needs; the
                weights and the step counter are left as they were.
        """
        recorded = [float(v) for v in losses]
        finite = [math.isfinite(v) for v in recorded]
        need = self.plan.record_length(self.zo_state["step"], self.field.active_slots(self._slots))
        complete = len(recorded) == need and all(finite[:-1])
        cut_short = 0 < len(recorded) < need and all(finite[:-1]) and not finite[-1]
        if not (complete or cut_short):
            raise ValueError(
                f"replay: step {self.zo_state['step']} takes {need} losses (fewer only when the last is "
                f"non-finite), got {len(recorded)}; the log belongs to an estimator with other settings"
            )
        pending = iter(recorded)
        self._replaying = True
        try:
            return self.step(lambda: next(pending))
        finally:
            self._replaying = False

    @torch.no_grad()
    def estimate(self, closure: Callable, full_closure: Callable | None = None) -> list[torch.Tensor]:
        """The gradient estimate g_hat of the next step, materialised, without updating.

        For analysis (gradient cosines, second moments): it allocates one
        tensor per parameter. g_hat is the plan's estimate (before any
        candidate phase) along the directions as the field draws them (for
        HiZOO, z / sqrt(H) with the current H). The weights are restored
        (exactly with perturbation='exact', up to rounding with 'inplace');
        the step counter advances so that the next call draws new directions.
        """
        full_closure = full_closure or closure
        slots, keys = self._begin()
        self._base = "theta"
        try:
            record, losses = [], []
            values = self._run(self.plan.queries(self, slots, keys), closure, full_closure, slots, record, losses)
            if values is None:
                raise FloatingPointError(f"estimate: the closure returned a non-finite loss ({losses[-1]})")
            estimate = self.plan.estimate(self, slots, keys, values)
            terms = estimate.terms
            at_theta = self.perturbation.at_theta
            out = []
            for s in self._slots:
                dtype = torch.float64 if s.param.dtype == torch.float64 else torch.float32
                g = torch.zeros(s.param.shape, dtype=dtype, device=s.param.device)
                for key, coefs in terms:
                    if coefs.get(s.uid, 0.0):
                        g.add_(self.field.materialize(s, key, at_theta=at_theta).to(dtype), alpha=coefs[s.uid])
                out.append(g)
            # the plan keeps what the step would (MeZO-SVRG's anchor, at these weights: they do not move)
            self.plan.before_update(self, slots, estimate)
            return out
        finally:
            self.perturbation.restore()
            if self._base != "theta":
                self.plan.swap(self, slots)
                self._base = "theta"
            self.field.end_step()
            self.zo_state["step"] += 1

    # -- checkpoints ------------------------------------------------------------
    def state_dict(self) -> dict:
        """torch's optimizer state plus `zo`: seeds, step counter, masks, backend."""
        sd = super().state_dict()
        sd["zo"] = {
            **self.zo_state,
            "n": self.n,
            "plan": self.plan.name,
            "plan_state": self.plan.state_dict(),
            "sampler": self.field.sampler.name,
            "perturbation": self.perturbation.name,
            "backend": self.backend.name,
            "stream": self.backend.stream.name,
            "rule": self.rule.name,
            "magnitude": self.field.magnitude.state_dict() if self.field.magnitude is not None else None,
            "estimator": self.identity(),
        }
        return sd

    def identity(self) -> dict:
        """What the estimator is, for refusing another's state: its class, registry name and field pieces."""
        pieces = {k: None if v is None else type(v).__name__ for k, v in
                  (("layers", self.field.layers), ("magnitude", self.field.magnitude),
                   ("subspace", self.field.subspace))}
        return {"class": type(self).__name__, "name": self.registry_name, "field": pieces}

    def _check_saved(self, zo: dict, state: dict) -> None:
        """Refuses a state_dict saved by another estimator, or one whose per-parameter state is damaged
        (checked before anything is loaded, so that a refused state leaves this one as it was)."""
        saved, mine = zo.get("estimator"), self.identity()
        if saved is not None and (saved.get("class"), saved.get("field")) != (mine["class"], mine["field"]):
            def told(e):
                pieces = ", ".join(f"{k}={v}" for k, v in sorted((e.get("field") or {}).items()) if v)
                return f"{e.get('name') or e.get('class')} ({e.get('class')}{', ' + pieces if pieces else ''})"

            raise ValueError(f"state_dict: saved by {told(saved)}; this estimator is {told(mine)}")
        params = [(s.name or f"parameter {s.uid}", s.param) for s in self._slots]
        rule = self.rule
        if not isinstance(state, dict):
            raise ValueError(f"state_dict: 'state' must be a dict, got {type(state).__name__}")
        for index, st in state.items():
            if not isinstance(index, int) or not 0 <= index < len(params):
                raise ValueError(f"state_dict: state for parameter index {index!r}; this estimator has "
                                 f"{len(params)} parameters")
            name, p = params[index]
            if not isinstance(st, dict):
                raise ValueError(f"state_dict: the state of {name} must be a dict, got {type(st).__name__}")
            present = [k for k in rule.state_keys if k in st]
            if present and len(present) != len(rule.state_keys):
                missing = sorted(set(rule.state_keys) - set(present))
                raise ValueError(f"state_dict: the {rule.name} state of {name} lacks {', '.join(missing)}")
            for key, v in st.items():
                if not torch.is_tensor(v):
                    if key in rule.state_keys:
                        raise ValueError(f"state_dict: {key} of {name} must be a tensor, got {type(v).__name__}")
                    continue
                if v.dim() > 0 and v.shape != p.shape:
                    raise ValueError(f"state_dict: {key} of {name} has shape {tuple(v.shape)}, the parameter "
                                     f"{tuple(p.shape)}")
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise ValueError(f"state_dict: {key} of {name} holds non-finite values")
                if key in rule.nonnegative_keys and bool((v < 0).any()):
                    raise ValueError(f"state_dict: {key} of {name} holds negative values")
                if key in rule.positive_keys and bool((v <= 0).any()):
                    raise ValueError(f"state_dict: {key} of {name} holds values <= 0")

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        zo = state_dict.pop("zo", None)
        if zo is None:
            raise ValueError("state_dict: no 'zo' entry; it was not saved by a zoo estimator")
        for field, mine in (("rule", self.rule.name), ("sampler", self.field.sampler.name), ("n", self.n),
                            ("plan", self.plan.name)):
            if zo.get(field, "two-point" if field == "plan" else None) != mine:
                raise ValueError(f"state_dict: saved with {field}={zo[field]!r}, this estimator has {mine!r}")
        self._check_saved(zo, state_dict.get("state", {}))
        stream = saved_stream({"zo": zo})
        if stream != self.backend.stream.name:
            raise ValueError(
                f"state_dict: saved with backend {zo.get('backend')!r} (stream {stream!r}); this estimator "
                f"uses backend {self.backend.name!r} (stream {self.backend.stream.name!r}), whose directions differ. "
                "Pass the saved backend (the 'cpu' and 'triton' backends share one stream)"
            )
        super().load_state_dict(state_dict)
        for k in ("seed", "step", "skipped_steps", "forward_passes"):
            self.zo_state[k] = zo[k]
        self.zo_state["queries"] = zo.get("queries", zo["forward_passes"])  # saved before zoo counted both
        self.plan.load_state_dict(zo.get("plan_state", {}))
        if self.field.magnitude is not None and zo.get("magnitude"):
            self.field.magnitude.load_state_dict(zo["magnitude"])
        self._build_slots()

    # -- accounting -------------------------------------------------------------
    def forwards_at(self, step: int | None = None) -> int:
        """Forward passes the plan spends at `step` (default: the next step); a jvp pass counts one."""
        step = self.zo_state["step"] if step is None else step
        # a plan's cost reads the slots only for their blocks (block-wise ZO), never a step's layer subset
        return self.plan.forwards_at(step, self._slots)

    @property
    def forwards_per_step(self) -> float:
        """Forward passes per step: the plan's cost at the next step where it is fixed, else its
        mean over the plan's period (MeZO-SVRG alternates 2 and 4)."""
        period = getattr(self.plan, "q", 1)
        costs = [self.forwards_at(self.zo_state["step"] + i) for i in range(period)]
        mean = sum(costs) / len(costs)
        return int(mean) if mean == int(mean) else mean

    def extra_state_bytes(self) -> int:
        """Bytes of parameter-sized state (moments, subspace factors); scratch excluded."""
        total = 0
        for st in self.state.values():
            if isinstance(st, dict):
                total += sum(v.numel() * v.element_size() for v in st.values() if torch.is_tensor(v) and v.dim() > 0)
        if self.field.subspace is not None:
            total += 4 * self.field.subspace.extra_state_numel(self._slots)
        return total

    def __repr__(self) -> str:
        hyper = {k: v for k, v in self.defaults.items() if k != "params"}
        return (
            f"{type(self).__name__}(n={self.n}, sampler={self.field.sampler.name}, "
            f"perturbation={self.perturbation.name}, backend={self.backend.name}, seed={self.zo_state['seed']}, "
            f"{', '.join(f'{k}={v}' for k, v in hyper.items())})"
        )
