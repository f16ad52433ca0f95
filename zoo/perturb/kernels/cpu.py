"""The CPU Philox kernel: `philox.c`, compiled on first use and loaded with ctypes.

The shared library is built once per (source, flags, CPU) into
`$ZOO_CACHE/kernels` (default `~/.cache/zoo/kernels`) with the system C
compiler (`$CC`, else `cc`). ctypes releases the GIL during a call, so the
backend's worker threads run the kernel in parallel. Where no compiler works,
`available()` is False and the `auto` backend falls back to torch's generator.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from . import DISTRIBUTIONS, MASK_FROM_THETA, check_bitmask, check_chunk

SOURCE = Path(__file__).with_name("philox.c")

# Tried in order; the first that compiles is used. Both give the same bits: with
# ZOO_PRECISE the kernel uses no libm transcendental, only IEEE operations.
# -ffinite-math-only lets fmaxf vectorise (uniforms are never NaN).
_FLAG_SETS = (
    ["-O3", "-march=native", "-fno-math-errno", "-ffinite-math-only", "-DZOO_PRECISE"],
    ["-O3", "-fno-math-errno", "-DZOO_PRECISE"],
)
_LIBS = (["-lm"], ["-lm"])

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None


def _cache_dir() -> Path:
    root = os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo"
    return Path(root) / "kernels"


def _cpu_id() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _build(flags: list[str], libs: list[str]) -> Path:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
    tag = hashlib.sha256("\0".join([SOURCE.read_text(), cc, *flags, *libs, _cpu_id()]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"philox-{tag}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_so = Path(tmp) / out.name
        cmd = [cc, *flags, "-fPIC", "-shared", str(SOURCE), "-o", str(tmp_so), *libs]
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
        os.replace(tmp_so, out)  # atomic: concurrent builders never see half a library
    return out


def _load() -> ctypes.CDLL | None:
    global _lib, _error
    with _lock:
        if _lib is not None or _error is not None:
            return _lib
        errors = []
        for flags, libs in zip(_FLAG_SETS, _LIBS):
            try:
                lib = ctypes.CDLL(str(_build(flags, libs)))
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                errors.append(f"{' '.join(flags)}: {detail.strip().splitlines()[-1] if detail.strip() else exc}")
                continue
            args = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int]
            lib.zoo_fill.argtypes = args
            lib.zoo_fill.restype = None
            lib.zoo_axpy_f32.argtypes = args + [ctypes.c_float]
            lib.zoo_axpy_f32.restype = None
            lib.zoo_axpy_masked_f32.argtypes = args + [ctypes.c_float, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
            lib.zoo_axpy_masked_f32.restype = None
            _lib = lib
            return _lib
        _error = "; ".join(errors)
        return None


def available() -> bool:
    """Whether the kernel compiled and loaded on this machine."""
    return _load() is not None


def unavailable_reason() -> str:
    _load()
    return _error or ""


def fill_(out: torch.Tensor, start: int, seed: int, distribution: str) -> torch.Tensor:
    """out[i] = z[start + i]: the stream's values for elements [start, start + len(out))."""
    check_chunk(out, start, "CPU", float32=True)
    _load().zoo_fill(out.data_ptr(), out.numel(), start, seed, DISTRIBUTIONS[distribution])
    return out


def axpy_(p: torch.Tensor, start: int, seed: int, distribution: str, alpha: float) -> torch.Tensor:
    """p[i] += alpha * z[start + i] for a float32 p, in one pass with z in registers."""
    check_chunk(p, start, "CPU", float32=True)
    _load().zoo_axpy_f32(p.data_ptr(), p.numel(), start, seed, DISTRIBUTIONS[distribution], alpha)
    return p


def combine_(p: torch.Tensor, start: int, seeds: list[int], coefs: list[float], decay: float, distribution: str) -> bool:
    """The fused sweep where the C kernel has one (a single direction into float32); else False."""
    if decay != 1.0 or len(seeds) != 1 or p.dtype != torch.float32 or not p.is_contiguous():
        return False
    axpy_(p, start, seeds[0], distribution, coefs[0])
    return True


def axpy_masked_(p: torch.Tensor, start: int, seed: int, distribution: str, alpha: float, tau: float,
                 bits: torch.Tensor | None, mode: int) -> torch.Tensor:
    """p[i] += alpha * z[start + i] * m[i] for a float32 p, m the magnitude mask |theta| < tau.

    Args:
        bits: the parameter's whole packed mask (uint8, bit e % 8 of byte e // 8 for
            element e), written in mode MASK_FROM_THETA_AND_KEEP, read in MASK_FROM_BITS.
        mode: MASK_FROM_THETA (p is theta), MASK_FROM_THETA_AND_KEEP (and store m),
            or MASK_FROM_BITS (p is perturbed; m comes from bits).
    """
    check_chunk(p, start, "CPU", float32=True)
    check_bitmask(bits, p, start, mode)
    ptr = bits.data_ptr() if mode != MASK_FROM_THETA else None
    _load().zoo_axpy_masked_f32(p.data_ptr(), p.numel(), start, seed, DISTRIBUTIONS[distribution], alpha, tau,
                                ptr, mode)
    return p


def combine_masked_(p: torch.Tensor, start: int, seed: int, coef: float, distribution: str, tau: float,
                    bits: torch.Tensor | None, mode: int) -> bool:
    """The fused masked sweep where the C kernel has one (float32, contiguous); else False."""
    if p.dtype != torch.float32 or not p.is_contiguous():
        return False
    axpy_masked_(p, start, seed, distribution, coef, tau, bits, mode)
    return True
