"""Settings of AdaZeta's tensor-train adapters, and the factorisation that gives the cores their shapes."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass


def factorize(n: int, parts: int) -> list[int]:
    """`n` as a product of `parts` factors, the most even such split, largest first.

    "Most even" is the smallest largest factor, then the largest smallest one: 576 in 3 parts gives
    [9, 8, 8]; 4096 gives [16, 16, 16]; a prime n gives [n, 1, 1] (a core of width 1 is allowed).

    Raises:
        ValueError: n < 1 or parts < 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or isinstance(parts, bool) \
            or not isinstance(parts, int) or parts < 1:
        raise ValueError(f"factorize: needs integers n >= 1 and parts >= 1, got {n!r}, {parts!r}")
    return list(_most_even(n, parts))


@functools.lru_cache(maxsize=256)
def _most_even(n: int, parts: int) -> tuple[int, ...]:
    if parts == 1:
        return (n,)
    best = None
    for d in range(1, math.isqrt(n) + 1):
        if n % d:
            continue
        for first in {d, n // d}:
            split = tuple(sorted((first, *_most_even(n // first, parts - 1)), reverse=True))
            if best is None or (split[0], -split[-1]) < (best[0], -best[-1]):
                best = split
    return best


@dataclass(frozen=True)
class TTAdapterConfig:
    """AdaZeta's adapter (arXiv 2406.18060, its `loretta_adp`): h -> h + U relu(D h), D and U tensor trains.

    Attributes:
        bottleneck: the adapter's inner width (64 in AdaZeta).
        rank: the tensor-train rank between cores (5 in AdaZeta).
        cores_per_side: how many cores factor each side of a matrix (3 in AdaZeta: 4096 = 16·16·16 and
            64 = 4·4·4, six cores a matrix). The factors come from the model's own sizes (`factorize`),
            where AdaZeta's code hard-codes those of hidden size 4096.
        targets: the block outputs the adapters follow ("self_attn", "mlp": after attention and after the MLP).
    """

    bottleneck: int = 64
    rank: int = 5
    cores_per_side: int = 3
    targets: tuple[str, ...] = ("self_attn", "mlp")

    def __post_init__(self):
        for name in ("bottleneck", "rank", "cores_per_side"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        if not self.targets or not all(isinstance(t, str) for t in self.targets):
            raise ValueError(f"targets: a non-empty tuple of module names, got {self.targets!r}")
