"""Classification heads for the no-prompt mode. Heads start at zero: the initial prediction is uniform."""

from __future__ import annotations

import torch
from torch import nn


class PooledClassifier(nn.Module):
    """An encoder's mean-pooled last hidden states, then a linear head.

    The head is float32 whatever the encoder's dtype: the pooled features are cast up to it, so a
    half-precision encoder still trains a float32 head. `forward(pooled=...)` runs the head alone on
    features `pool` computed earlier, which is how a run that trains only the head skips the frozen
    encoder (`zoo.finetune.feature_cache`).
    """

    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def pool(self, input_ids, attention_mask) -> torch.Tensor:
        """The mean over each row's unpadded positions of the encoder's last hidden states."""
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1)

    def forward(self, input_ids=None, attention_mask=None, *, pooled=None):
        if pooled is None:
            pooled = self.pool(input_ids, attention_mask)
        return self.head(pooled.to(self.head.weight.dtype))


def zero_head(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module
