"""Theory: effective rank of the Hessian and MeZO's convergence predictions.

Implemented: gamma (predicted slowdown), effective_rank (Hutch++/Hutchinson
trace and Lanczos lambda_max from any hvp callable), HessianOperator (HVPs of
a model's loss three ways), SLQ spectral densities and the ranks they give,
the forward-only trace probe and the mean-square stability edge of ZO-SGD.
`measure` runs them on a real model's fine-tuning loss (`zoo theory
effective-rank`), and `experiment` sets predicted against measured slowdown
(`zoo theory slowdown`). Results and commands: docs/theory.md; the PyHessian
comparison is benchmarks/pyhessian_compare.py.
"""

from .density import SpectralDensity, slq, trace_probe
from .hvp import HessianOperator
from .rank import EffectiveRank, effective_rank
from .slowdown import gamma
from .stability import zo_stability_edge
from .spectral import LanczosResult, TraceEstimate, hutch_plus_plus, hutchinson, lanczos

__all__ = [
    "EffectiveRank",
    "HessianOperator",
    "SpectralDensity",
    "slq",
    "trace_probe",
    "zo_stability_edge",
    "LanczosResult",
    "TraceEstimate",
    "effective_rank",
    "gamma",
    "hutch_plus_plus",
    "hutchinson",
    "lanczos",
]
