"""Effective rank of a Hessian from Hessian-vector products.

MeZO (Malladi et al. 2023, arXiv 2305.17333, Assumption 1) bounds ZO's slowdown
by the local effective rank r = tr(H) / ||H||_op instead of the dimension d.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .spectral import Matvec, hutch_plus_plus, hutchinson, lanczos


@dataclass
class EffectiveRank:
    """tr(H), lambda_max and r = tr(H)/lambda_max, with standard errors.

    r_stderr propagates trace_stderr only: the Lanczos lambda_max converges
    geometrically and its error is negligible against the trace's. `lambda_max_from`
    says which estimate lambda_max is: "lanczos" or "hutch++ sketch" (free Ritz value).
    """

    trace: float
    trace_stderr: float
    lambda_max: float
    r: float
    r_stderr: float
    method: str
    matvecs: int
    dim: int
    lambda_max_from: str = "lanczos"

    def to_dict(self) -> dict:
        return asdict(self)


def effective_rank(
    hvp: Matvec,
    dim: int,
    num_matvecs: int = 100,
    method: str = "hutch++",
    seed: int = 0,
    lanczos_steps: int = 30,
) -> EffectiveRank:
    """Estimates r = tr(H)/lambda_max of the operator v -> H v.

    Args:
        hvp: maps a flat float64 vector of length dim to H v.
        dim: the dimension d.
        num_matvecs: matvecs spent on the trace.
        method: "hutch++" (default) or "hutchinson".
        seed: seeds the probes (private generator).
        lanczos_steps: matvecs spent on lambda_max. 0 (with "hutch++") takes the largest
            Ritz value of the Hutch++ sketch instead, a lower bound that costs no matvec and is
            accurate when the top eigenvalues stand apart from the rest.
    """
    if dim < 1:
        raise ValueError(f"dim: must be >= 1, got {dim}")
    if method == "hutch++":
        tr = hutch_plus_plus(hvp, dim, num_matvecs, seed)
    elif method == "hutchinson":
        tr = hutchinson(hvp, dim, num_matvecs, seed)
    else:
        raise ValueError(f"method: must be 'hutch++' or 'hutchinson', got {method!r}")
    if lanczos_steps == 0 and method != "hutch++":
        raise ValueError("lanczos_steps=0 takes lambda_max from the Hutch++ sketch; use method='hutch++'")
    if lanczos_steps < 0:
        raise ValueError(f"lanczos_steps: must be >= 0, got {lanczos_steps}")
    if lanczos_steps:
        lz = lanczos(hvp, dim, lanczos_steps, seed=seed + 1)
        lam, extra, source = lz.lambda_max, lz.matvecs, "lanczos"
    else:
        lam, extra, source = tr.ritz_max, 0, "hutch++ sketch"
    if not lam > 0:
        raise ValueError(f"hvp: lambda_max = {lam:.3g} <= 0; the effective rank is undefined")
    r = tr.trace / lam
    return EffectiveRank(tr.trace, tr.stderr, lam, r, tr.stderr / lam, method, tr.matvecs + extra, dim, source)
