"""A score-function estimator over Bernoulli masks of structured units: ZO by policy gradient, not SPSA.

Gao et al., "Bypass Back-propagation: Optimization-based Structural Pruning for Large Language Models via
Policy Gradient" (arXiv 2406.10576) learn keep-probabilities s of structured units (MLP channels,
attention heads) from forward passes alone. Each step samples K masks m_k ~ Bernoulli(s) on one batch
and moves s against the REINFORCE estimate of grad_s E[L]:

    m_k   = 1[u_k < s],  u_k ~ U(0, 1)^n drawn from the key (seed, step, k)
    g     = (1/K) sum_k (L(m_k) - b) (m_k - s) / (s (1 - s))      (grad_s log p(m_k | s) = (m - s)/(s(1-s)))
    s    <- Proj(s - lr g),  Proj onto {s : sum s = keep * n, s_min <= s <= 1 - s_min}
    b    <- beta b + (1 - beta) mean_k L(m_k)                     (b starts at the first step's mean)

The weights never move: only the masks change what the model computes. The output is a hard mask, the
keep * n units with the largest s. Like zoo's SPSA estimators, a step is a function of (s, b, the step's
key, its K losses), so `replay(losses)` repeats it exactly and `state_dict` resumes it bit for bit; it
is its own class because nothing of the weight-perturbing machinery applies.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..perturb.keys import mix, step_seed
from ..pruning.units import UnitMasks, keep_top
from ..validation import integer, number


def project_to_budget(v: torch.Tensor, total: float, low: float, high: float) -> torch.Tensor:
    """The Euclidean projection of v onto {s : sum s = total, low <= s <= high}: clamp(v - tau) with tau
    found by bisection (sum clamp(v - tau) falls as tau rises), in float64."""
    v = v.double()
    lo, hi = float(v.min()) - high - 1.0, float(v.max()) - low + 1.0
    for _ in range(100):
        tau = (lo + hi) / 2
        if float((v - tau).clamp(low, high).sum()) > total:
            lo = tau
        else:
            hi = tau
    return (v - (lo + hi) / 2).clamp(low, high)


class PolicyGradientMasks(torch.optim.Optimizer):
    """Learns keep-probabilities of `masks`' units by policy gradient (arXiv 2406.10576).

    Args:
        masks: the model's UnitMasks (zoo.pruning.units).
        keep: the fraction of units to keep (the budget sum s = keep * n holds after every step).
        lr: step size on s.
        samples: K, masks sampled (forward passes) per step, all on the step's batch.
        baseline_decay: beta of the moving-average baseline.
        min_prob: s stays in [min_prob, 1 - min_prob], so that log p stays finite.
        seed: the masks' keys.
    """

    def __init__(self, masks: UnitMasks, keep: float, lr: float = 0.05, samples: int = 4,
                 baseline_decay: float = 0.9, min_prob: float = 0.01, seed: int = 0):
        number("keep", keep, minimum=0.0, strict=True, maximum=1.0, what="the fraction of units kept")
        number("lr", lr, minimum=0.0)
        integer("samples", samples, minimum=1, what="masks per step")
        number("baseline_decay", baseline_decay, minimum=0.0, maximum=1.0)
        number("min_prob", min_prob, minimum=0.0, strict=True, maximum=0.5)
        if not min_prob <= keep <= 1 - min_prob:
            raise ValueError(f"keep: {keep} lies outside [min_prob, 1 - min_prob] = [{min_prob}, {1 - min_prob}]")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: must be an integer, got {seed!r}")
        self.masks, self.keep, self.samples = masks, keep, samples
        self.baseline_decay, self.min_prob = baseline_decay, min_prob
        self.probs = torch.full((masks.total,), float(keep), dtype=torch.float64)
        super().__init__([self.probs], dict(lr=lr))
        self.pg_state = {"seed": seed, "step": 0, "baseline": None, "forward_passes": 0}
        self.last_record: list[float] = []

    def sampled_masks(self, step: int | None = None) -> list[torch.Tensor]:
        """The K masks of `step` (default: the next), from its keys and the current s."""
        step = self.pg_state["step"] if step is None else step
        key = step_seed(self.pg_state["seed"], step)
        out = []
        for k in range(self.samples):
            gen = torch.Generator().manual_seed(mix(key, k))
            out.append((torch.rand(self.probs.numel(), generator=gen, dtype=torch.float64) < self.probs).double())
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor | float]) -> torch.Tensor:
        """Samples K masks, evaluates the closure under each, and moves s. The model is left unmasked
        (all ones), also when the closure raises, in which case the step is not taken."""
        if closure is None or not callable(closure):
            raise ValueError("closure: the policy-gradient estimator needs a closure that returns the loss")
        drawn = self.sampled_masks()
        losses = []
        try:
            for m in drawn:
                self.masks.set(m)
                loss = closure()
                losses.append(float(loss.detach()) if torch.is_tensor(loss) else float(loss))
        finally:
            self.masks.set(torch.ones(self.masks.total))
        self.pg_state["forward_passes"] += len(losses)  # only a step that is taken counts its forwards
        return self._update(drawn, losses)

    def _update(self, drawn: Sequence[torch.Tensor], losses: Sequence[float]) -> torch.Tensor:
        self.last_record = list(losses)
        mean = math.fsum(losses) / len(losses)
        if not all(math.isfinite(v) for v in losses):
            self.pg_state["step"] += 1  # a new draw next time; s and b stay
            return torch.tensor(float("nan"), dtype=torch.float64)
        b = self.pg_state["baseline"]
        b = mean if b is None else b
        s = self.probs
        grad = torch.zeros_like(s)
        for m, loss in zip(drawn, losses):
            grad += (loss - b) * (m - s) / (s * (1 - s))
        grad /= len(drawn)
        lr = self.param_groups[0]["lr"]
        s.copy_(project_to_budget(s - lr * grad, self.keep * s.numel(), self.min_prob, 1 - self.min_prob))
        beta = self.baseline_decay
        self.pg_state["baseline"] = beta * b + (1 - beta) * mean
        self.pg_state["step"] += 1
        return torch.tensor(mean, dtype=torch.float64)

    @torch.no_grad()
    def replay(self, losses: Sequence[float]) -> torch.Tensor:
        """Repeats a step from its K recorded losses, with no forward pass."""
        if len(losses) != self.samples:
            raise ValueError(f"replay: a step takes {self.samples} losses, got {len(losses)}")
        drawn = self.sampled_masks()
        self.pg_state["forward_passes"] += len(losses)
        return self._update(drawn, [float(v) for v in losses])

    def hard_mask(self) -> torch.Tensor:
        """The output: 1 for the keep * n units with the largest s (ties: the earlier unit), else 0."""
        return keep_top(self.probs, self.keep)

    def state_dict(self) -> dict:
        return {"probs": self.probs.clone(), "pg": dict(self.pg_state), "keep": self.keep, "samples": self.samples,
                "lr": self.param_groups[0]["lr"]}

    def load_state_dict(self, state: dict) -> None:
        if state.get("keep") != self.keep or state.get("samples") != self.samples:
            raise ValueError(f"state_dict: saved with keep={state.get('keep')}, samples={state.get('samples')}; "
                             f"this estimator has keep={self.keep}, samples={self.samples}")
        if state["probs"].shape != self.probs.shape:
            raise ValueError(f"state_dict: {state['probs'].numel()} units saved, this model has {self.probs.numel()}")
        self.probs.copy_(state["probs"])
        self.pg_state = dict(state["pg"])
        self.param_groups[0]["lr"] = state["lr"]
