"""Zeroth-order estimators, each a torch.optim.Optimizer, looked up by name.

    >>> import zoo
    >>> opt = zoo.estimators.get("mezo-sgd", model, lr=1e-6, eps=1e-3, seed=0)
    >>> loss = opt.step(lambda: model(**batch).loss)
"""

from . import _registry  # noqa: F401  (performs the built-in registrations)
from .base import ZOOptimizer
from .mezo import MeZOAdam, MeZOSGD
from .registry import EstimatorSpec, aliases, available, get, register, spec
from .rules import AdamRule, SGDRule, UpdateRule
from .variants import LeZO, SparseMeZO, SubZero

__all__ = [
    "AdamRule",
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
