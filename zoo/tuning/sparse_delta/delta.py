"""Trainable deltas on a set of entries of a frozen Linear weight, added in its forward.

A `SparseDelta` holds `values` (trainable, float32) at flat entries `index` of its Linear's weight, and,
with probe regrowth, a pool of candidate entries `probe_index` with their own trainable `probe_values`.
A forward hook adds (W + Delta) x - W x = Delta x to the Linear's output as a gather of the inputs' columns
and a scatter-add into the outputs' rows: the dense Delta is never formed, and the weight is never written.
"""

from __future__ import annotations

import torch
from torch import nn

ATTRIBUTE = "sparse_delta"


class SparseDelta(nn.Module):
    """Deltas on `count` entries of an (out, in) weight, plus `probes` candidate entries (0: none).

    The index sets are buffers: they are part of the module's state, saved with checkpoints and
    changed only by `zoo.tuning.sparse_delta.update_index_sets`.
    """

    def __init__(self, shape: tuple[int, int], index: torch.Tensor, probe_index: torch.Tensor,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("index", index.clone())
        self.register_buffer("probe_index", probe_index.clone())
        self.values = nn.Parameter(torch.zeros(index.numel(), dtype=dtype))
        self.probe_values = nn.Parameter(torch.zeros(probe_index.numel(), dtype=dtype),
                                         requires_grad=probe_index.numel() > 0)

    def delta_output(self, x: torch.Tensor) -> torch.Tensor:
        """Delta x for inputs x [..., in]: [..., out]."""
        index, values = self.index, self.values
        if self.probe_index.numel():
            index, values = torch.cat([index, self.probe_index]), torch.cat([values, self.probe_values])
        rows, cols = index // self.shape[1], index % self.shape[1]
        contrib = x.to(values.dtype).index_select(-1, cols) * values  # [..., entries]
        out = torch.zeros(*x.shape[:-1], self.shape[0], dtype=contrib.dtype, device=x.device)
        return out.index_add(-1, rows, contrib)


def _add_delta(module: nn.Linear, args, output):
    return output + getattr(module, ATTRIBUTE).delta_output(args[0]).to(output.dtype)
