"""MeZO's predicted slowdown of ZO-SGD against SGD.

Malladi et al. 2023 (arXiv 2305.17333), Lemma 2 and Theorem 1: with a local
effective rank r = tr(H) / ||H||_op, the n-SPSA estimate's second moment makes
the largest stable ZO step smaller than SGD's by

    gaussian z:             gamma = (r + n + 1) / n
    z uniform on the sphere
    of radius sqrt(d):      gamma = (d r + d - 2) / (n (d + 2)) + 1

so eta_ZO = eta_SGD / gamma and, under PL, ZO needs gamma times as many steps.
gamma compares ZO's expected decrease with SGD's descent-lemma bound, not with
SGD's actual decrease.
"""

from __future__ import annotations

import math


def gamma(r: float, n: int, distribution: str = "gaussian", d: int | None = None) -> float:
    """The slowdown factor gamma for effective rank r and n directions per step.

    Args:
        r: effective rank tr(H)/lambda_max (> 0).
        n: directions per step (>= 1).
        distribution: "gaussian" or "sphere".
        d: the dimension; required for "sphere".

    Raises:
        ValueError: on a bad argument, naming it.
    """
    if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
        raise ValueError(f"r: the effective rank must be a finite number > 0, got {r!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: must be an integer >= 1, got {n!r}")
    if distribution == "gaussian":
        return (r + n + 1) / n
    if distribution == "sphere":
        if d is None or d < 1:
            raise ValueError(f"d: the sphere formula needs the dimension d >= 1, got {d!r}")
        return (d * r + d - 2) / (n * (d + 2)) + 1
    raise ValueError(f"distribution: must be 'gaussian' or 'sphere', got {distribution!r}")
