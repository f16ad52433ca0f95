"""Query plans: which points a ZO step evaluates, on which batch, and what the losses mean.

Beside the direction field (what z is) and the update rule (how the estimate moves the
weights), a query plan says, per step:

1. the directions of the step (`keys`): n of them, or one per block, or a schedule n(step);
2. the points to evaluate (`queries`), each an offset from theta as Terms (key, coefficient
   per parameter uid; no term is L(theta)), with the batch it is evaluated on (`"step"`, the
   step's minibatch, or `"full"`, an anchor's larger batch) and its base (theta, or an anchor);
3. how the losses become the estimate, g_hat = sum_k c_k z_k as Terms (`estimate`);
4. optionally a candidate phase after the estimate (`candidates`, then `choose`).

The optimizer (`ZOOptimizer.step`, `replay`, `estimate`, its forward count and state_dict)
only reads the plan, so an estimator is a combination: plan x direction field x update rule x
perturbation mode. The default `TwoPointPlan` is MeZO's {theta +- eps z_j} on one minibatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from ..perturb import DirectionKey, ParamSlot
from ..perturb.sweeps import Term
from .schedule import QuerySchedule

BATCHES = ("step", "full")


@dataclass
class Query:
    """One point a step evaluates.

    Attributes:
        terms: the point as an offset from the base: sum_k c_k[uid] z_k (empty: the base itself).
        batch: `"step"` (the step's closure) or `"full"` (the `full_closure`, e.g. SVRG's full batch).
        base: `"theta"` (the live weights) or `"anchor"` (a stored copy of earlier weights).
        kind: `"loss"` (a forward pass) or `"jvp"` (a forward-mode pass: L and its derivative
            along the tangent of the first term's key).
    """

    terms: list[Term]
    batch: str = "step"
    base: str = "theta"
    kind: str = "loss"


@dataclass
class Estimate:
    """What a plan makes of the losses: g_hat = sum_k c_k[uid] z_k, and what else a rule reads.

    Attributes:
        terms: the coefficients of g_hat, per key and parameter uid.
        extra: anything else a plan's rule needs (HiZOO's per-uid curvature
            (L+ + L- - 2 L0) / (2 eps^2) as `curvature_signed`, Cons's choice, SVRG's anchor g).
    """

    terms: list[Term]
    extra: dict = field(default_factory=dict)


def offset(key: DirectionKey, slots: Sequence[ParamSlot], sign: float) -> Term:
    """sign * eps_group * z(key) on every slot: the point theta + sign eps z."""
    return key, {s.uid: sign * s.group["eps"] for s in slots}


def scaled(terms: Sequence[Term], factor: dict[int, float] | float) -> list[Term]:
    """The terms with every coefficient multiplied by `factor` (a number, or one per uid)."""
    if isinstance(factor, dict):
        return [(k, {u: c * factor[u] for u, c in coefs.items()}) for k, coefs in terms]
    return [(k, {u: c * factor for u, c in coefs.items()}) for k, coefs in terms]


def merged(*term_lists: Sequence[Term]) -> list[Term]:
    """One term per key, coefficients of equal (key, uid) added, in first-seen order."""
    out: dict[DirectionKey, dict[int, float]] = {}
    for terms in term_lists:
        for key, coefs in terms:
            target = out.setdefault(key, {})
            for uid, c in coefs.items():
                target[uid] = target[uid] + c if uid in target else c
    return list(out.items())


class QueryPlan:
    """Base class: the directions, points and estimate of one step.

    Subclasses override `queries` and `estimate` (and `keys`, `candidates`, `choose`,
    `after_update` where they need to). `n` is the number of directions per step, or a
    `QuerySchedule` (AdaZeta) that makes it a function of the step.
    """

    name = "base"
    #: Whether the plan evaluates `batch="full"` queries (a `full_closure` serves them).
    uses_full_batch = False

    def __init__(self, n: int | QuerySchedule = 1):
        if isinstance(n, QuerySchedule):
            self.schedule = n
        else:
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"n: the number of directions per step must be an integer >= 1, got {n!r}")
            self.schedule = None
        self.n = n if self.schedule is None else self.schedule.n_max

    # -- directions ---------------------------------------------------------------
    def directions(self, step: int) -> int:
        """Directions of step `step`: n, or the schedule's n_k."""
        return self.n if self.schedule is None else self.schedule(step)

    def keys(self, step_seed: int, step: int, slots: Sequence[ParamSlot]) -> list[DirectionKey]:
        return [DirectionKey(step_seed, j) for j in range(self.directions(step))]

    # -- the step -----------------------------------------------------------------
    def queries(self, opt, slots: Sequence[ParamSlot], keys: Sequence[DirectionKey]) -> list[Query]:
        raise NotImplementedError

    def estimate(self, opt, slots, keys, values: Sequence[float]) -> Estimate:
        raise NotImplementedError

    def candidates(self, opt, slots, estimate: Estimate) -> list[Query]:
        """Points evaluated after the estimate (none by default)."""
        return []

    def choose(self, opt, slots, estimate: Estimate, values, candidate_values) -> Estimate:
        """The estimate the rule applies, given the candidate losses."""
        return estimate

    def check_group(self, group: dict) -> None:
        """Raises ValueError where a param group's hyper-parameters do not suit the plan."""

    def before_update(self, opt, slots, estimate: Estimate) -> None:
        """Called after the queries (and candidates), before the rule moves the weights."""

    def after_update(self, opt, slots, keys, estimate: Estimate) -> None:
        """Called once the update is applied (anchors, logs of keys)."""

    def skipped(self, opt, slots, keys) -> None:
        """Called when the step is skipped for a non-finite loss (the weights are back at theta)."""

    def swap(self, opt, slots) -> None:
        """Exchanges the live weights and the plan's anchor (plans with `base="anchor"` queries)."""
        raise NotImplementedError(f"{type(self).__name__} has no anchor")

    # -- accounting ---------------------------------------------------------------
    def forwards_at(self, step: int, slots: Sequence[ParamSlot]) -> int:
        """Forward passes step `step` costs (a jvp pass counts as one)."""
        raise NotImplementedError

    def record_length(self, step: int, slots: Sequence[ParamSlot]) -> int:
        """Floats a step's record holds (what `replay` takes): one per forward, two per jvp."""
        return self.forwards_at(step, slots)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TwoPointPlan(QueryPlan):
    """MeZO's plan (Malladi et al. 2023, Algorithms 1 and 2): theta +- eps z_j, one minibatch.

        d_j = (L(theta + eps z_j) - L(theta - eps z_j)) / 2
        g_hat = (1/n) sum_j (d_j / eps) z_j                    (coefficient="projected")
        g_hat = (1/n) sum_j sign(d_j) z_j                      (coefficient="sign": ZO-SGD-Sign,
                                                                Zhang et al. 2024, arXiv 2402.11592)

    2n forward passes per step.
    """

    name = "two-point"
    COEFFICIENTS = ("projected", "sign")

    def __init__(self, n: int | QuerySchedule = 1, coefficient: str = "projected"):
        super().__init__(n)
        if coefficient not in self.COEFFICIENTS:
            raise ValueError(f"coefficient: must be one of {self.COEFFICIENTS}, got {coefficient!r}")
        self.coefficient = coefficient
        if coefficient == "sign":
            self.name = "two-point-sign"

    def queries(self, opt, slots, keys):
        return [Query([offset(key, slots, sign)]) for key in keys for sign in (1.0, -1.0)]

    def diffs(self, values: Sequence[float]) -> list[float]:
        return [(values[i] - values[i + 1]) / 2.0 for i in range(0, len(values), 2)]

    def estimate(self, opt, slots, keys, values):
        n = len(keys)
        diffs = self.diffs(values)
        if self.coefficient == "sign":
            return Estimate([(key, {s.uid: math.copysign(1.0, d) / n if d else 0.0 for s in slots})
                             for key, d in zip(keys, diffs)])
        return Estimate([(key, {s.uid: d / (n * s.group["eps"]) for s in slots}) for key, d in zip(keys, diffs)])

    def forwards_at(self, step, slots):
        return 2 * self.directions(step)


class OneSidedPlan(QueryPlan):
    """Forward differences with L(theta) shared by the n directions (ZO-Bench's one-sided
    estimator, Zhang et al. 2024, arXiv 2402.11592, with its L(theta) evaluated once):

        g_hat = (1/n) sum_j (L(theta + eps z_j) - L(theta)) / eps * z_j

    n + 1 forward passes. Its bias is O(eps) (the curvature term eps/2 z^T H z z), against
    O(eps^2) for the two-point plan.
    """

    name = "one-sided"

    def queries(self, opt, slots, keys):
        return [Query([])] + [Query([offset(key, slots, 1.0)]) for key in keys]

    def estimate(self, opt, slots, keys, values):
        n, base = len(keys), values[0]
        return Estimate([(key, {s.uid: (v - base) / (n * s.group["eps"]) for s in slots})
                         for key, v in zip(keys, values[1:])])

    def forwards_at(self, step, slots):
        return self.directions(step) + 1


class ConservativePlan(TwoPointPlan):
    """ZO-SGD-Conservative (ZO-Bench, Zhang et al. 2024, arXiv 2402.11592): L(theta), the
    two-point estimate, then the candidates theta - lr g_hat and theta + lr g_hat; the step
    keeps the best of {theta, theta - lr g_hat, theta + lr g_hat} (theta on ties).

    2n + 3 forward passes. The candidates are plain SGD steps: the rule must be SGD without
    weight decay, so that the committed update is exactly the candidate that was evaluated.
    """

    name = "conservative"

    def check_group(self, group: dict) -> None:
        if group.get("weight_decay", 0.0) != 0.0:
            raise ValueError("weight_decay: ZO-SGD-Cons keeps one of the candidates it evaluated, theta -+ lr g_hat, "
                             "so it takes weight_decay=0")

    def queries(self, opt, slots, keys):
        return [Query([])] + super().queries(opt, slots, keys)

    def estimate(self, opt, slots, keys, values):
        est = super().estimate(opt, slots, keys, values[1:])
        est.extra["loss_at_theta"] = values[0]
        return est

    def candidates(self, opt, slots, estimate):
        lr = {s.uid: s.group["lr"] for s in slots}
        return [Query(scaled(estimate.terms, {u: -sign * v for u, v in lr.items()})) for sign in (1.0, -1.0)]

    def choose(self, opt, slots, estimate, values, candidate_values):
        options = [estimate.extra["loss_at_theta"], *candidate_values]  # theta, theta - lr g, theta + lr g
        best = min(range(3), key=lambda i: (options[i], i))
        estimate.extra["chosen"] = ("theta", "minus", "plus")[best]
        return Estimate(scaled(estimate.terms, (0.0, 1.0, -1.0)[best]), extra=estimate.extra)

    def forwards_at(self, step, slots):
        return 2 * self.directions(step) + 3


def blocks_of(slots: Sequence[ParamSlot], count: int | None) -> list[list[ParamSlot]]:
    """The parameter blocks of block-wise ZO, in a fixed order.

    Units are the model's repeated layers (ParamSlot.layer) and, before them, everything outside
    them as one unit; with no layers at all, each tensor is a unit. `count=None` makes each unit a
    block (ZO-Bench's module-wise perturbation at block level); an integer groups the units into
    at most that many contiguous blocks of near-equal size.
    """
    if all(s.layer is None for s in slots):
        units = [[s] for s in slots]
    else:
        outside = [s for s in slots if s.layer is None]
        layers = sorted({s.layer for s in slots if s.layer is not None})
        units = ([outside] if outside else []) + [[s for s in slots if s.layer == i] for i in layers]
    if count is None or count >= len(units):
        return units
    bounds = [round(i * len(units) / count) for i in range(count + 1)]
    return [[s for u in units[a:b] for s in u] for a, b in zip(bounds, bounds[1:])]


class BlockPlan(QueryPlan):
    """Block-wise ZO (ZO-Bench's module-wise perturbation, Zhang et al. 2024, arXiv 2402.11592):
    one direction z_b per block b, perturbing that block only, and one projected gradient each:

        c_b = (L(theta + eps z_b) - L(theta - eps z_b)) / (2 eps),   g_hat_b = c_b z_b

    2 x blocks forward passes per step. Each block's estimate sees only its own parameters'
    noise, so its variance is that of a smaller problem; the price is the forwards.

    Args:
        blocks: None for one block per unit (see `blocks_of`), or the number of contiguous blocks.
    """

    name = "block"

    def __init__(self, blocks: int | None = None):
        super().__init__(1)
        if blocks is not None and (not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 1):
            raise ValueError(f"blocks: must be None (one per layer) or an integer >= 1, got {blocks!r}")
        self.blocks = blocks

    def keys(self, step_seed, step, slots):
        return [DirectionKey(step_seed, b) for b in range(len(blocks_of(slots, self.blocks)))]

    def queries(self, opt, slots, keys):
        return [Query([offset(key, block, sign)])
                for key, block in zip(keys, blocks_of(slots, self.blocks)) for sign in (1.0, -1.0)]

    def estimate(self, opt, slots, keys, values):
        out = []
        for i, (key, block) in enumerate(zip(keys, blocks_of(slots, self.blocks))):
            d = (values[2 * i] - values[2 * i + 1]) / 2.0
            out.append((key, {s.uid: d / s.group["eps"] for s in block}))
        return Estimate(out)

    def forwards_at(self, step, slots):
        return 2 * len(blocks_of(slots, self.blocks))


class HessianPlan(QueryPlan):
    """HiZOO's three points (Zhao et al. 2025, arXiv 2402.15173): L(theta), L(theta +- eps u)
    with u = z / sqrt(H) drawn through the field's preconditioner.

        d = (L+ - L-) / 2,   kappa = (L+ + L- - 2 L0) / (2 eps^2)

    The HessianRule turns them into the update and the new H. 3 forward passes, one direction.
    """

    name = "hessian-three-point"

    def __init__(self):
        super().__init__(1)

    def queries(self, opt, slots, keys):
        (key,) = keys
        return [Query([]), Query([offset(key, slots, 1.0)]), Query([offset(key, slots, -1.0)])]

    def estimate(self, opt, slots, keys, values):
        (key,) = keys
        base, plus, minus = values
        d = (plus - minus) / 2.0
        second = plus + minus - 2.0 * base
        return Estimate([(key, {s.uid: d / s.group["eps"] for s in slots})],
                        extra={"curvature_signed": {s.uid: second / (2.0 * s.group["eps"] ** 2) for s in slots}})

    def forwards_at(self, step, slots):
        return 3


class JvpPlan(QueryPlan):
    """Forward gradients (Baydin et al. 2022; ZO-Bench's Forward-Grad, arXiv 2402.11592): the
    exact directional derivative along each keyed z by one forward-mode pass,

        g_hat = (1/n) sum_j (grad L . z_j) z_j.

    n jvp passes per step. Not forward-only in memory: each pass holds a tangent the size of the
    trained parameters and forward-mode activations.
    """

    name = "jvp"

    def queries(self, opt, slots, keys):
        return [Query([(key, {s.uid: 1.0 for s in slots})], kind="jvp") for key in keys]

    def estimate(self, opt, slots, keys, values):
        n = len(keys)
        return Estimate([(key, {s.uid: v / n for s in slots}) for key, v in zip(keys, values)])

    def forwards_at(self, step, slots):
        return self.directions(step)

    def record_length(self, step, slots):
        return 2 * self.directions(step)
