"""Noise streams: what the values of z are, given a direction key and an element.

A stream maps (direction key, parameter uid, element index) to a draw of the
sampler's distribution. Two streams exist:

- `GeneratorStream` (backend `torch`): per block of BLOCK_SIZE elements, a
  private `torch.Generator` seeded from the key. Works on any device, but a
  CUDA generator draws other values than a CPU one.
- `PhiloxStream` (backends `cpu` and `triton`): counter-based Philox-4x32-10
  and Box-Muller, as Triton's `tl.randn4x`; the C kernel on CPU tensors and
  the Triton kernel on GPU tensors compute the same integers, so a run's z
  is the same on either device (the normals up to the rounding of log, cos
  and sin).
"""

from __future__ import annotations

import torch

from .keys import BLOCK_SIZE, DirectionKey, mix
from .samplers import Sampler

_PHILOX_TAG = 0x9E11


class GeneratorStream:
    """z from torch generators reseeded per block (the core backend's stream)."""

    name = "torch-generator"

    def fill_(self, out: torch.Tensor, sampler: Sampler, key: DirectionKey, uid: int, start: int, ws) -> torch.Tensor:
        gen = ws.generator(out.device)
        for offset in range(0, out.numel(), BLOCK_SIZE):
            gen.manual_seed(key.block_seed(uid, (start + offset) // BLOCK_SIZE))
            sampler.fill_(out[offset : offset + BLOCK_SIZE], gen)
        return out

    def combine_(self, p, decay, terms, sampler, uid, start) -> bool:
        """A fused sweep, where this stream has one; False means 'use the generic path'."""
        return False

    def combine_masked_(self, p, key, coef, sampler, uid, start, tau, bits, mode) -> bool:
        """A fused masked sweep, where this stream has one; False means 'use the generic path'."""
        return False


def philox_seed(key: DirectionKey, uid: int) -> int:
    """The 63-bit Philox key of one parameter's part of a direction."""
    return mix(_PHILOX_TAG, key.seed, key.index, uid)


class PhiloxStream:
    """z from counter-based Philox, drawn in registers by the C or Triton kernel.

    Args:
        kernel: `cpu` (the C kernel, CPU tensors) or `triton` (GPU tensors, or
            CPU tensors under TRITON_INTERPRET=1).
    """

    name = "philox"

    def __init__(self, kernel: str):
        if kernel == "cpu":
            from .kernels import cpu as impl
        elif kernel == "triton":
            from .kernels import triton_ops as impl
        else:
            raise ValueError(f"kernel must be 'cpu' or 'triton', got {kernel!r}")
        self.kernel = kernel
        self._impl = impl

    def fill_(self, out: torch.Tensor, sampler: Sampler, key: DirectionKey, uid: int, start: int, ws) -> torch.Tensor:
        return self._impl.fill_(out, start, philox_seed(key, uid), sampler.distribution)

    def combine_(self, p: torch.Tensor, decay: float, terms, sampler: Sampler, uid: int, start: int) -> bool:
        """p <- decay p + sum_k c_k z_k with z in registers; False where the kernel has no fused form."""
        seeds = [philox_seed(key, uid) for key, _ in terms]
        coefs = [c for _, c in terms]
        return self._impl.combine_(p, start, seeds, coefs, decay, sampler.distribution)

    def combine_masked_(self, p: torch.Tensor, key: DirectionKey, coef: float, sampler: Sampler, uid: int,
                        start: int, tau: float, bits: torch.Tensor | None, mode: int) -> bool:
        """p <- p + coef z m with z in registers and m a magnitude mask (see MagnitudeMask.kernel_args)."""
        return self._impl.combine_masked_(p, start, philox_seed(key, uid), coef, sampler.distribution, tau, bits, mode)
