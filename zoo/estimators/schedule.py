"""AdaZeta's query schedule: directions per step that grow over training.

AdaZeta (Yang et al., "AdaZeta: Adaptive Zeroth-Order Tensor-Train Adaption for
Memory-Efficient Large Language Models Fine-Tuning", EMNLP 2024, arXiv 2406.18060) fixes the
number of queries once per epoch k (k = 1, 2, ...):

    n_k = min(max(floor(beta * k^alpha), 1), n_max).

Here k counts blocks of `every` steps (k = step // every + 1), so the schedule is a pure
function of the step: replay, resume and the forward count read it from the step alone.
"""

from __future__ import annotations

import math


class QuerySchedule:
    """n(step) = min(max(floor(beta * k^alpha), 1), n_max), k = step // every + 1.

    Args:
        beta: scale (AdaZeta's SHRINK, 0.85 in its scripts).
        alpha: growth exponent (AdaZeta sets it from its NUM and the epoch count).
        n_max: cap on the directions per step.
        every: steps per block k (an epoch in AdaZeta).
    """

    def __init__(self, beta: float = 0.85, alpha: float = 0.5, n_max: int = 15, every: int = 100):
        for name, v in (("beta", beta), ("alpha", alpha)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: must be a finite number >= 0, got {v!r}")
        for name, v in (("n_max", n_max), ("every", every)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        self.beta, self.alpha, self.n_max, self.every = float(beta), float(alpha), n_max, every

    def __call__(self, step: int) -> int:
        k = step // self.every + 1
        return min(max(math.floor(self.beta * k**self.alpha), 1), self.n_max)

    def as_dict(self) -> dict:
        return {"beta": self.beta, "alpha": self.alpha, "n_max": self.n_max, "every": self.every}

    @classmethod
    def coerce(cls, value) -> "QuerySchedule | None":
        """A schedule from None, a QuerySchedule, or a dict of its arguments (CLI and JSON)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"query_schedule: expected a dict of beta, alpha, n_max, every, got {value!r}")

    def __repr__(self) -> str:
        return f"QuerySchedule({', '.join(f'{k}={v}' for k, v in self.as_dict().items())})"
