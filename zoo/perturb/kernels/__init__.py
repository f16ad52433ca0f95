"""Kernels of the Philox noise stream: `cpu` (C, via ctypes) and `triton_ops` (Triton).

Both take a chunk of one parameter (or a float32 buffer), the index of its
first element (a multiple of GROUP) and the parameter's 64-bit Philox key.
"""

from __future__ import annotations

import torch

GROUP = 4096  # elements per group of the stream; the same constant as in philox.c
DISTRIBUTIONS = {"gaussian": 0, "rademacher": 1}


def check_chunk(t: torch.Tensor, start: int, kernel: str, *, float32: bool = False) -> None:
    """Raises ValueError unless t is a contiguous chunk starting on a group boundary."""
    if not t.is_contiguous() or (kernel == "CPU" and t.device.type != "cpu"):
        raise ValueError(f"the {kernel} kernel needs a contiguous {'CPU ' if kernel == 'CPU' else ''}tensor")
    if start % GROUP:
        raise ValueError(f"start must be a multiple of {GROUP}, got {start}")
    if float32 and t.dtype != torch.float32:
        raise ValueError(f"the {kernel} kernel writes float32 z, got a {t.dtype} tensor")
