"""Head-only runs score on cached encoder features: the frozen encoder runs once per distinct example.

When only the head of a `PooledClassifier` trains (tuning "head"), every step of every estimator
recomputes the same pooled features of the same few training examples, and the encoder's forward is
nearly all of a step's time (MiniLM-L6 on RTE: 2.5 s of a 2.5 s MeZO step on this CPU). The head is
a function of those features alone, so `CachedHeadScorer` keeps them and runs the head by itself.

Each example's features are computed alone, a batch of one with no padding, so they are a function
of its tokens only: which batch first asked for them, or whether a run was resumed, cannot change
their rounding, and a resumed run retraces the uninterrupted one bit for bit.

The cache follows the encoder: it is emptied when the scorer meets another encoder or any encoder
weight changed (moved, cast or replaced: new storage; or changed in place: torch's version counter),
and it is bypassed while any encoder parameter requires grad or the encoder is in train mode. The
features live in the process's store under a hash of the encoder's bits (state_store.py), so a
benchmark worker's later runs on the same encoder reuse them.
"""

from __future__ import annotations

import weakref

import torch

from ..placement import model_device
from .heads import PooledClassifier
from .scoring import Encoded, HeadScorer
from .state_store import states_for


def frozen_encoder_weights(model) -> list[torch.Tensor] | None:
    """The encoder's weights when `model` is a PooledClassifier whose encoder has no trainable parameter
    and runs in eval mode (in train mode dropout would draw other features at every call, which a cache
    would freeze); else None."""
    if not isinstance(model, PooledClassifier) or model.encoder.training:
        return None
    weights = list(model.encoder.parameters())
    return None if any(p.requires_grad or not _has_storage(p) for p in weights) else weights


def _has_storage(t: torch.Tensor) -> bool:
    """False for a function transform's wrapper (perturbation="batched" hands the encoder vmapped copies of
    its trained tensors, which report requires_grad=False): such a weight varies, so nothing is cached."""
    try:
        t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return False
    return True


class CachedHeadScorer(HeadScorer):
    """A `HeadScorer` that pools each distinct example once while the encoder stays frozen.

    Scores equal `HeadScorer`'s up to rounding (its batches pad rows to the longest; here a row is
    pooled alone). Where the encoder may change (it trains, runs dropout, or the model is no
    PooledClassifier), it scores exactly as `HeadScorer` does.
    """

    def __init__(self, tokenizer, max_length: int = 256):
        super().__init__(tokenizer, max_length)
        self._features: dict[bytes, torch.Tensor] = {}
        self._encoder = None  # a weak reference to the encoder that pooled them
        self._stamp: tuple | None = None
        self.pooled_rows = 0  # rows the encoder ran: the cache's misses

    def __call__(self, model, enc: Encoded) -> torch.Tensor:
        weights = frozen_encoder_weights(model)
        if weights is None:
            return super().__call__(model, enc)
        return model(pooled=self.pooled(model, enc, weights)).float()

    @torch.no_grad()
    def pooled(self, model: PooledClassifier, enc: Encoded, weights: list[torch.Tensor]) -> torch.Tensor:
        """The batch's pooled features, [rows, hidden], from the cache or the encoder (whose `weights`
        the caller has listed)."""
        # storage and version counter of every weight: a move, a cast or a `.data` swap gives new storage,
        # an in-place change a new version
        stamp = tuple((p.data_ptr(), p._version) for p in weights)
        if self._encoder is None or self._encoder() is not model.encoder or stamp != self._stamp:
            self._features = states_for("pooled", weights)
            self._encoder, self._stamp = weakref.ref(model.encoder), stamp
        device = model_device(model)
        rows = []
        for ids, mask in zip(enc.input_ids, enc.attention_mask):
            tokens = ids[mask.bool()]
            key = tokens.cpu().numpy().tobytes()
            if key not in self._features:
                one = tokens.unsqueeze(0).to(device)
                self._features[key] = model.pool(one, torch.ones_like(one))[0]
                self.pooled_rows += 1
            rows.append(self._features[key])
        return torch.stack(rows)
