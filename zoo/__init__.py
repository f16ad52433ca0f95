"""zoo: zeroth-order (forward-only) fine-tuning of language models.

Start from MeZO (Malladi et al., 2023): perturb the weights in place along a
direction regenerated from a seed, take two forward passes, and step along
that direction by the projected gradient.
"""

from . import estimators, perturb
from .estimators import available, get, register

__version__ = "0.1.0"

__all__ = ["__version__", "available", "estimators", "get", "perturb", "register"]
