"""Theory: effective rank of the Hessian and MeZO's convergence predictions.

Implemented: gamma (predicted slowdown), effective_rank (Hutch++/Hutchinson
trace and Lanczos lambda_max from any hvp callable), HessianOperator (HVPs of
a model's loss three ways), SLQ spectral densities and the ranks they give,
and the forward-only trace probe. The real-model experiments, the CLI and the
ZO-SGD stability edge are the theory issue's remaining work.
"""

from .density import SpectralDensity, slq, trace_probe
from .hvp import HessianOperator
from .rank import EffectiveRank, effective_rank
from .slowdown import gamma
from .spectral import LanczosResult, TraceEstimate, hutch_plus_plus, hutchinson, lanczos

__all__ = [
    "EffectiveRank",
    "HessianOperator",
    "SpectralDensity",
    "slq",
    "trace_probe",
    "LanczosResult",
    "TraceEstimate",
    "effective_rank",
    "gamma",
    "hutch_plus_plus",
    "hutchinson",
    "lanczos",
]
