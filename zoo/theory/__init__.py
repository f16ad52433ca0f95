"""Theory: effective rank of the Hessian and MeZO's convergence predictions.

Implemented: gamma (predicted slowdown), effective_rank (Hutch++/Hutchinson
trace and Lanczos lambda_max from any hvp callable), and the spectral
primitives. Hessian-vector products of real models, SLQ densities and the
CLI experiments are the theory issue's remaining work.
"""

from .rank import EffectiveRank, effective_rank
from .slowdown import gamma
from .spectral import LanczosResult, TraceEstimate, hutch_plus_plus, hutchinson, lanczos

__all__ = [
    "EffectiveRank",
    "LanczosResult",
    "TraceEstimate",
    "effective_rank",
    "gamma",
    "hutch_plus_plus",
    "hutchinson",
    "lanczos",
]
