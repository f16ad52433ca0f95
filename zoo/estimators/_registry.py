"""Every built-in registration, in one place.

Each entry names the paper, the forward passes a step costs, and the
parameter-sized state the estimator keeps beside the weights.
"""

from __future__ import annotations

from .mezo import MeZOAdam, MeZOSGD
from .registry import register
from .variants import LeZO, SparseMeZO, SubZero

register(
    "mezo-sgd", MeZOSGD,
    description="Two-point SPSA in place, one direction per step (MeZO Algorithm 1).",
    paper="Malladi et al. 2023, arXiv 2305.17333",
    aliases=("mezo", "zo-sgd", "spsa"),
)
register(
    "n-spsa", MeZOSGD,
    description="n directions per step averaged at the same weights (MeZO Algorithm 2); 2n forwards.",
    defaults={"n": 4},
    paper="Malladi et al. 2023, arXiv 2305.17333",
    aliases=("nspsa",),
)
register(
    "mezo-adam", MeZOAdam,
    description="Adam moments on the ZO gradient estimate; extra state 2x parameters.",
    extra_state="2x parameters (Adam moments)",
    paper="Malladi et al. 2023, arXiv 2305.17333, Appendix B",
    aliases=("zo-adam",),
)
register(
    "sparse-mezo", SparseMeZO,
    description="Perturb and update only small-magnitude weights; mask recomputed each step.",
    extra_state="none (in-place: 1 bit per element during a step)",
    paper="Liu et al. 2024, arXiv 2402.15751",
    aliases=("smezo",),
)
register(
    "lezo", LeZO,
    description="Each step perturbs and updates a random subset of layers.",
    paper="Wang et al. 2024, arXiv 2410.09823",
)
register(
    "subzero", SubZero,
    description="Low-rank per-matrix directions U Z V, U and V refreshed every k steps.",
    extra_state="(m + n) r per matrix (subspace bases, rebuilt from the seed)",
    paper="Yu et al. 2024, arXiv 2410.08989",
)
