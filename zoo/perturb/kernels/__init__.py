"""Kernels of the Philox noise stream: `cpu` (C, via ctypes) and `triton_ops` (Triton).

Both take a chunk of one parameter (or a float32 buffer), the index of its
first element (a multiple of GROUP) and the parameter's 64-bit Philox key.
"""

from __future__ import annotations

import torch

GROUP = 4096  # elements per group of the stream; the same constant as in philox.c
DISTRIBUTIONS = {"gaussian": 0, "rademacher": 1}

#: Where Sparse MeZO's mask comes from in a masked sweep (the codes philox.c and the Triton kernel take):
#: |theta| < tau, the same and packed into the bitmask, or read from the bitmask (weights perturbed).
MASK_FROM_THETA, MASK_FROM_THETA_AND_KEEP, MASK_FROM_BITS = 0, 1, 2


def check_chunk(t: torch.Tensor, start: int, kernel: str, *, float32: bool = False) -> None:
    """Raises ValueError unless t is a contiguous chunk starting on a group boundary."""
    if not t.is_contiguous() or (kernel == "CPU" and t.device.type != "cpu"):
        raise ValueError(f"the {kernel} kernel needs a contiguous {'CPU ' if kernel == 'CPU' else ''}tensor")
    if start % GROUP:
        raise ValueError(f"start must be a multiple of {GROUP}, got {start}")
    if float32 and t.dtype != torch.float32:
        raise ValueError(f"the {kernel} kernel writes float32 z, got a {t.dtype} tensor")


def check_bitmask(bits: torch.Tensor | None, p: torch.Tensor, start: int, mode: int) -> None:
    """Raises ValueError unless `bits` can serve a masked sweep of p's elements in `mode`."""
    if mode not in (MASK_FROM_THETA, MASK_FROM_THETA_AND_KEEP, MASK_FROM_BITS):
        raise ValueError(f"mode must be 0, 1 or 2, got {mode}")
    if mode == MASK_FROM_THETA:
        return
    if bits is None or bits.dtype != torch.uint8 or not bits.is_contiguous() or bits.device != p.device:
        raise ValueError(f"the masked kernel needs a contiguous uint8 {p.device.type.upper()} bitmask in this mode")
    if bits.numel() * 8 < start + p.numel():
        raise ValueError(f"bitmask of {bits.numel()} bytes is too short for elements up to {start + p.numel()}")
