"""SpIEL-style sparse fine-tuning: trainable deltas on a changing set of weight entries (arXiv 2401.16405)."""

from .config import REGROWTH, SparseDeltaConfig
from .delta import SparseDelta
from .index_sets import IndexSetUpdates, add_sparse_deltas, index_set_state, sparse_deltas, update_index_sets

__all__ = ["IndexSetUpdates", "REGROWTH", "index_set_state", "SparseDelta", "SparseDeltaConfig", "add_sparse_deltas", "sparse_deltas", "update_index_sets"]
