"""What ZO minimises: cross-entropy, or a non-differentiable metric (MeZO section 3.3).

A ZO estimator needs only loss values, so `1 - accuracy` and `1 - macro-F1`
are as usable as cross-entropy. They are piecewise constant in the weights,
so a first-order optimizer cannot use them; `differentiable` says which is which.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return (scores.argmax(-1) == labels).float().mean().item()


def macro_f1(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 over classes present in labels or predictions."""
    f1s = []
    for c in range(num_classes):
        tp = ((predictions == c) & (labels == c)).sum().item()
        fp = ((predictions == c) & (labels != c)).sum().item()
        fn = ((predictions != c) & (labels == c)).sum().item()
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s) if f1s else 0.0


def _ce(scores, labels):
    return F.cross_entropy(scores, labels)


def _one_minus_accuracy(scores, labels):
    return 1.0 - (scores.argmax(-1) == labels).to(scores.dtype).mean()


def _one_minus_f1(scores, labels):
    return torch.tensor(1.0 - macro_f1(scores.argmax(-1), labels, scores.shape[-1]), dtype=scores.dtype)


OBJECTIVES = {"ce": _ce, "accuracy": _one_minus_accuracy, "f1": _one_minus_f1}
DIFFERENTIABLE = {"ce"}


def get_objective(name: str):
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}: use one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
