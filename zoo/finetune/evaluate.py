"""Accuracy, macro-F1 and loss of a model on a list of examples (no gradients)."""

from __future__ import annotations

import torch
from torch.nn import functional as F
from ..progress import progress as progress_bar

from ..tasks import Example
from .objectives import macro_f1


@torch.no_grad()
def evaluate(model, scorer, examples: list[Example], batch_size: int = 32, progress: str | None = None) -> dict:
    """Metrics over `examples`. Batches group examples of similar length, so padding is small."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text) + len(examples[i].text_b or ""))
    scores = [None] * len(examples)
    was_training = model.training
    model.eval()
    batches = range(0, len(order), batch_size)
    for start in progress_bar(batches, desc=progress or "", enabled=progress is not None, leave=False):
        idx = order[start:start + batch_size]
        enc = scorer.encode([examples[i] for i in idx])  # the scorer moves it to the model's device
        for i, s in zip(idx, scorer(model, enc).cpu()):
            scores[i] = s
    model.train(was_training)
    s = torch.stack(scores)
    labels = torch.tensor([e.label for e in examples])
    pred = s.argmax(-1)
    return {"accuracy": (pred == labels).float().mean().item(),
            "macro_f1": macro_f1(pred, labels, s.shape[-1]),
            "loss": F.cross_entropy(s, labels).item(),
            "examples": len(examples)}
