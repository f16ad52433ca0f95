"""Every built-in registration, in one place.

Each entry names the paper, the forward passes a step costs, and the
parameter-sized state the estimator keeps beside the weights.
"""

from __future__ import annotations

from .adazeta import ADAZETA_SCHEDULE, AdaZeta
from .forward_grad import ForwardGrad
from .hizoo import HiZOO
from .mezo import MeZOAdam, MeZOSGD
from .mezo_svrg import MeZOSVRG
from .registry import directions, register, two_per_direction
from .variants import LOZO, LeZO, SparseMeZO, SubZero
from .zobench import BlockZO, OneSided, ZOConservative, ZOMomentum, ZOSign

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

def _block_forwards(blocks=None, **_) -> int:
    if blocks is None:
        raise ValueError("block-zo with blocks=None has one block per layer of the model, so its cost "
                         "(2 x blocks) is known only with the model: give blocks=K")
    return 2 * blocks


# -- ZO-Bench's set (Zhang et al. 2024) ------------------------------------------------------
register(
    "zo-sign", ZOSign,
    description="ZO-SGD-Sign: step along sign(d_j) z_j, the sign of each projected gradient.",
    paper="Zhang et al. 2024 (ZO-Bench), arXiv 2402.11592",
    aliases=("zo-sgd-sign",),
)
register(
    "zo-momentum", ZOMomentum,
    description="ZO-SGD with heavy-ball momentum on the MeZO estimate (ZO-SGD-MMT).",
    extra_state="1x parameters (momentum buffer)",
    paper="Zhang et al. 2024 (ZO-Bench), arXiv 2402.11592",
    aliases=("zo-sgd-mmt", "zo-mmt"),
)
register(
    "zo-cons", ZOConservative,
    description="ZO-SGD-Cons: L(theta), the two-point estimate, then keep the best of theta and theta -+ lr g_hat.",
    forwards=lambda step=0, **h: two_per_direction(step, **h) + 3,
    cost="2n + 3",
    paper="Zhang et al. 2024 (ZO-Bench), arXiv 2402.11592",
    aliases=("zo-sgd-cons",),
)
register(
    "one-sided", OneSided,
    description="Forward differences (L(theta + eps z_j) - L(theta)) / eps with L(theta) shared by the n directions.",
    forwards=lambda step=0, **h: directions(step, **h) + 1,
    cost="n + 1",
    paper="Zhang et al. 2024 (ZO-Bench), arXiv 2402.11592",
)
register(
    "block-zo", BlockZO,
    description="One direction and one projected gradient per block of the model (module-wise; blocks=None: one per layer).",
    defaults={"blocks": 2},
    forwards=lambda step=0, **h: _block_forwards(**h),
    cost="2 x blocks",
    paper="Zhang et al. 2024 (ZO-Bench), arXiv 2402.11592",
    aliases=("zo-block",),
)

# -- the systems that followed MeZO -----------------------------------------------------------
register(
    "hizoo", HiZOO,
    description="Directions z/sqrt(H) with H a diagonal Hessian estimate from a third point, L(theta).",
    forwards=lambda step=0, **h: 3,
    cost="3",
    extra_state="1x parameters (float32 diagonal Hessian)",
    paper="Zhao et al. 2025, arXiv 2402.15173",
)
register(
    "mezo-svrg", MeZOSVRG,
    description="Every q steps a full-batch estimate at an anchor; between, SVRG control variates (same z and batch).",
    forwards=lambda step=0, **h: 2 if step % h.get("q", 2) == 0 else 4,
    period=lambda **h: h.get("q", 2),
    cost="2 (full batch) every q, else 4",
    extra_state="1x parameters (anchor copy); none with anchor='keys'",
    paper="Gautam et al. 2024, arXiv 2404.08080",
    aliases=("zo-svrg", "svrg"),
)
register(
    "adazeta", AdaZeta,
    description="n-SPSA whose directions per step grow as min(max(floor(beta k^alpha), 1), n_max) over blocks k of steps.",
    defaults={"query_schedule": dict(ADAZETA_SCHEDULE)},
    cost="2 n(step)",
    paper="Yang et al. 2024, arXiv 2406.18060",
)
register(
    "lozo", LOZO,
    description="Low-rank directions U V^T per matrix, V redrawn every `interval` steps.",
    extra_state="none (V, n r per matrix, rebuilt from the seed)",
    paper="Chen et al. 2025, arXiv 2410.07698",
)
register(
    "forward-grad", ForwardGrad,
    description="Exact directional derivative grad L . z by forward-mode AD along the keyed z (a reference, not forward-only).",
    forwards=lambda step=0, **h: directions(step, **h),
    cost="n jvp",
    extra_state="none kept; per pass a 1x tangent plus forward-mode activations",
    paper="Baydin et al. 2022, arXiv 2202.08587; Zhang et al. 2024, arXiv 2402.11592",
    aliases=("fg", "forward-gradient"),
)
