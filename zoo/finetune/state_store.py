"""Per-process store of cached activations, keyed by the bits of the frozen weights that made them.

The feature cache (head runs) and the activation cache (top-block runs) compute each example's
frozen activations once per scorer. A benchmark worker runs many such runs in one process, each on a
fresh load of the same weights: without a store shared between them, every run would run the frozen
part of the model over the same dev and test examples again. The key is a hash of the frozen weights'
dtypes, shapes and bits (and what the caller adds, such as where the frozen part ends), so states are
reused only where the same weights would compute them again: a changed weight gives another key.
Each example's state is still computed alone, so it is the same function of its tokens either way.

The key also holds torch's thread count: float32 products can round differently with 1 and 2 threads (7 of
24 TREC questions' states entering SmolLM2's block 28 differed), and a benchmark's main process fills the
store on all threads in its one-batch sections before it trains runs on half of them beside a worker. With
states from another thread count, 25 of 49 runs of a rerun of the cpu suite differed from their committed
results from the first steps on (two ZO runs by 0.08-0.09 in TREC test accuracy), while the same runs
started alone reproduced the committed ones bit for bit; the thread count is the difference between the
processes found so far (the suite has not been rerun since this key).
"""

from __future__ import annotations

import collections

import torch

from .trajectory import fingerprint_of

# most recently used last; two entries cover a worker moving from one model (or block count) to the next
_STORE: "collections.OrderedDict[str, dict[bytes, torch.Tensor]]" = collections.OrderedDict()
KEPT = 2


def states_for(kind: str, frozen: list[torch.Tensor]) -> dict[bytes, torch.Tensor]:
    """The store's {token bytes: state} for `kind` (e.g. "pooled", "blocks:28") computed by `frozen`."""
    key = f"{kind}:threads{torch.get_num_threads()}:" + fingerprint_of((str(i), p) for i, p in enumerate(frozen))
    states = _STORE.pop(key, None)
    _STORE[key] = states = {} if states is None else states
    while len(_STORE) > KEPT:
        _STORE.popitem(last=False)
    return states


def forget() -> None:
    """Empties the store (tests use it so that every run computes its own states)."""
    _STORE.clear()
