"""Zeroth-order estimators, each a torch.optim.Optimizer, looked up by name.

    >>> import zoo
    >>> opt = zoo.estimators.get("mezo-sgd", model, lr=1e-6, eps=1e-3, seed=0)
    >>> loss = opt.step(lambda: model(**batch).loss)
"""

from . import _registry  # noqa: F401  (performs the built-in registrations)
from .adazeta import AdaZeta
from .base import ZOOptimizer
from .forward_grad import ForwardGrad
from .hizoo import HiZOO
from .mezo import MeZOAdam, MeZOSGD
from .mezo_svrg import MeZOSVRG
from .policy_gradient import PolicyGradientMasks
from .plans import BlockPlan, ConservativePlan, Estimate, HessianPlan, JvpPlan, OneSidedPlan, Query, QueryPlan, TwoPointPlan
from .registry import EstimatorSpec, aliases, available, get, register, spec
from .rules import AdamRule, HessianRule, MomentumRule, SGDRule, UpdateRule
from .schedule import QuerySchedule
from .svrg import SVRGPlan
from .variants import LOZO, LeZO, SparseMeZO, SubZero
from .zobench import BlockZO, OneSided, ZOConservative, ZOMomentum, ZOSign

__all__ = [
    "AdaZeta",
    "AdamRule",
    "BlockPlan",
    "BlockZO",
    "ConservativePlan",
    "Estimate",
    "ForwardGrad",
    "HessianPlan",
    "HessianRule",
    "HiZOO",
    "JvpPlan",
    "LOZO",
    "MeZOSVRG",
    "MomentumRule",
    "OneSided",
    "OneSidedPlan",
    "PolicyGradientMasks",
    "Query",
    "QueryPlan",
    "QuerySchedule",
    "SVRGPlan",
    "TwoPointPlan",
    "ZOConservative",
    "ZOMomentum",
    "ZOSign",
    "EstimatorSpec",
    "LeZO",
    "MeZOAdam",
    "MeZOSGD",
    "SGDRule",
    "SparseMeZO",
    "SubZero",
    "UpdateRule",
    "ZOOptimizer",
    "aliases",
    "available",
    "get",
    "register",
    "spec",
]
