"""Structured pruning from forward passes: unit masks, and the policy-gradient estimator that learns them
(zoo.estimators.policy_gradient, arXiv 2406.10576), against magnitude pruning."""

from .units import UNITS, UnitMasks, keep_top, magnitude_scores

__all__ = ["UNITS", "UnitMasks", "keep_top", "magnitude_scores"]
