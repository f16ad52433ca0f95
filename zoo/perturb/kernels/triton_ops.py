"""Launchers of the Triton Philox kernels, with the same calls as `cpu.py`.

Triton is imported on first use, so zoo imports without it. The kernels run
on CUDA tensors, and on CPU tensors when TRITON_INTERPRET=1 (how CI tests them).
"""

from __future__ import annotations

import os

import torch

from . import DISTRIBUTIONS, GROUP, MASK_FROM_THETA, check_bitmask, check_chunk


def available(device: torch.device | str = "cuda") -> bool:
    """Whether Triton can run the kernels on tensors of `device`."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if torch.device(device).type == "cpu":
        return os.environ.get("TRITON_INTERPRET") == "1"
    return torch.cuda.is_available()


def _kernels():
    from . import triton_philox

    return triton_philox


#: p + alpha z as one fma, like the C kernel's fmaf (Triton 3.10 stops fusing by default).
_OPTIONS = {"enable_fp_fusion": True}


def _grid(n: int) -> tuple[int]:
    return (-(-n // GROUP),)


def fill_(out: torch.Tensor, start: int, seed: int, distribution: str) -> torch.Tensor:
    """out[i] = z[start + i], as `cpu.fill_`."""
    check_chunk(out, start, "Triton", float32=True)
    k = _kernels()
    k._fill_kernel[_grid(out.numel())](
        out, out.numel(), start // GROUP, seed, GROUP_=GROUP, RADEMACHER=DISTRIBUTIONS[distribution] == 1,
        **_OPTIONS,
    )
    return out


def combine_(p: torch.Tensor, start: int, seeds: list[int], coefs: list[float], decay: float, distribution: str) -> bool:
    """p <- decay p + sum_k coefs[k] z_k in one read and one write of p (any float dtype)."""
    check_chunk(p, start, "Triton")
    if not p.is_floating_point() or p.dtype == torch.float64:
        return False  # float64 parameters keep float64 arithmetic on the generic path
    k = _kernels()
    seeds_t = torch.tensor(seeds, dtype=torch.int64, device=p.device)
    coefs_t = torch.tensor(coefs, dtype=torch.float32, device=p.device)
    k._combine_kernel[_grid(p.numel())](
        p, p.numel(), start // GROUP, seeds_t, coefs_t, len(seeds), float(decay),
        GROUP_=GROUP, RADEMACHER=DISTRIBUTIONS[distribution] == 1, SCALE_P=decay != 1.0, **_OPTIONS,
    )
    return True


def combine_masked_(p: torch.Tensor, start: int, seed: int, coef: float, distribution: str, tau: float,
                    bits: torch.Tensor | None, mode: int) -> bool:
    """p <- p + coef z m with m Sparse MeZO's mask, as `cpu.combine_masked_` (float32, float16, bfloat16).

    mode 0: m = |p| < tau; 1: the same, packed into `bits` (the parameter's whole
    bitmask); 2: m read from `bits` (the weights are perturbed).
    """
    check_chunk(p, start, "Triton")
    if not p.is_floating_point() or p.dtype == torch.float64:
        return False
    check_bitmask(bits, p, start, mode)
    # MASK_FROM_THETA neither loads nor stores bits: any pointer will do
    bits = p if mode == MASK_FROM_THETA else bits[start // 8:]
    # the comparison torch makes: |p| < tau in p's dtype, so tau is rounded to it first
    tau_p = torch.tensor(tau, dtype=p.dtype).item()
    k = _kernels()
    k._masked_kernel[_grid(p.numel())](
        p, bits, p.numel(), start // GROUP, seed, float(coef), float(tau_p),
        GROUP_=GROUP, RADEMACHER=DISTRIBUTIONS[distribution] == 1, MODE=mode, **_OPTIONS,
    )
    return True
