"""The Philox noise stream as Triton kernels (GPU, or CPU under TRITON_INTERPRET=1).

One program handles one group of GROUP elements of one parameter and draws its
z in registers with Triton's counter-based Philox (`tl.randn4x`,
`tl.randint4x`), so no tensor the size of a parameter is ever allocated. The
layout of z inside a group is the one documented in `philox.c`; the two agree
bit for bit on the integers.

The kernel computes, for each element of a parameter p (in float32, rounded
once into p's dtype):

    p <- decay * p + sum_j alpha_j z_j

with the directions z_j named by 64-bit seeds, so several n-SPSA directions
and MeZO's fused restore-and-update are each one read and one write of p.
"""

from __future__ import annotations

import triton
import triton.language as tl



@triton.jit
def _gaussian_quarters(seed, group, Q: tl.constexpr):
    counter = group.to(tl.int64) * Q + tl.arange(0, Q)
    return tl.randn4x(seed, counter)


@triton.jit
def _rademacher_quarters(seed, group, Q: tl.constexpr):
    R: tl.constexpr = Q // 32
    counter = group.to(tl.int64) * R + tl.arange(0, R)
    w0, w1, w2, w3 = tl.randint4x(seed, counter)
    bit = tl.arange(0, 32)[:, None]
    z0 = tl.reshape(((w0[None, :] >> bit) & 1).to(tl.float32) * 2.0 - 1.0, (Q,))
    z1 = tl.reshape(((w1[None, :] >> bit) & 1).to(tl.float32) * 2.0 - 1.0, (Q,))
    z2 = tl.reshape(((w2[None, :] >> bit) & 1).to(tl.float32) * 2.0 - 1.0, (Q,))
    z3 = tl.reshape(((w3[None, :] >> bit) & 1).to(tl.float32) * 2.0 - 1.0, (Q,))
    return z0, z1, z2, z3


@triton.jit
def _quarters(seed, group, Q: tl.constexpr, RADEMACHER: tl.constexpr):
    if RADEMACHER:
        return _rademacher_quarters(seed, group, Q)
    else:
        return _gaussian_quarters(seed, group, Q)


@triton.jit
def _update_quarter(p_ptr, base, k: tl.constexpr, Q: tl.constexpr, acc, n, decay, SCALE_P: tl.constexpr):
    offs = base + k * Q + tl.arange(0, Q)
    mask = offs < n
    p = tl.load(p_ptr + offs, mask=mask).to(tl.float32)
    if SCALE_P:
        p = p * decay
    tl.store(p_ptr + offs, (p + acc).to(p_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _store_quarter(out_ptr, base, k: tl.constexpr, Q: tl.constexpr, z, n):
    offs = base + k * Q + tl.arange(0, Q)
    tl.store(out_ptr + offs, z, mask=offs < n)


@triton.jit
def _combine_kernel(p_ptr, n, first_group, seeds_ptr, alphas_ptr, ndir, decay,
                    GROUP_: tl.constexpr, RADEMACHER: tl.constexpr, SCALE_P: tl.constexpr):
    Q: tl.constexpr = GROUP_ // 4
    pid = tl.program_id(0)
    group = first_group + pid
    base = pid.to(tl.int64) * GROUP_
    a0 = tl.zeros((Q,), tl.float32)
    a1 = tl.zeros((Q,), tl.float32)
    a2 = tl.zeros((Q,), tl.float32)
    a3 = tl.zeros((Q,), tl.float32)
    for j in range(ndir):
        seed = tl.load(seeds_ptr + j)
        alpha = tl.load(alphas_ptr + j)
        z0, z1, z2, z3 = _quarters(seed, group, Q, RADEMACHER)
        a0 += alpha * z0
        a1 += alpha * z1
        a2 += alpha * z2
        a3 += alpha * z3
    # four explicit calls rather than a loop: the quarters are separate register tensors
    _update_quarter(p_ptr, base, 0, Q, a0, n, decay, SCALE_P)
    _update_quarter(p_ptr, base, 1, Q, a1, n, decay, SCALE_P)
    _update_quarter(p_ptr, base, 2, Q, a2, n, decay, SCALE_P)
    _update_quarter(p_ptr, base, 3, Q, a3, n, decay, SCALE_P)


@triton.jit
def _fill_kernel(out_ptr, n, first_group, seed, GROUP_: tl.constexpr, RADEMACHER: tl.constexpr):
    Q: tl.constexpr = GROUP_ // 4
    pid = tl.program_id(0)
    z0, z1, z2, z3 = _quarters(seed, first_group + pid, Q, RADEMACHER)
    base = pid.to(tl.int64) * GROUP_
    _store_quarter(out_ptr, base, 0, Q, z0, n)
    _store_quarter(out_ptr, base, 1, Q, z1, n)
    _store_quarter(out_ptr, base, 2, Q, z2, n)
    _store_quarter(out_ptr, base, 3, Q, z3, n)


@triton.jit
def _masked_quarter(p_ptr, bits_ptr, base, k: tl.constexpr, Q: tl.constexpr, z, alpha, tau, n,
                    MODE: tl.constexpr):
    offs = base + k * Q + tl.arange(0, Q)
    inside = offs < n
    p = tl.load(p_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    byte_offs = (base + k * Q) // 8 + tl.arange(0, Q // 8)
    byte_inside = byte_offs * 8 < n
    if MODE == 2:
        b = tl.load(bits_ptr + byte_offs, mask=byte_inside, other=0).to(tl.int32)
        m = tl.reshape((b[:, None] >> tl.arange(0, 8)[None, :]) & 1, (Q,)).to(tl.float32)
    else:
        # tau arrives rounded to p's dtype: torch compares a bfloat16 tensor with a scalar in bfloat16
        m = tl.where(inside & (tl.abs(p) < tau), 1.0, 0.0)
        if MODE == 1:
            shifted = tl.reshape(m.to(tl.int32), (Q // 8, 8)) << tl.arange(0, 8)[None, :]
            tl.store(bits_ptr + byte_offs, tl.sum(shifted, axis=1).to(tl.uint8), mask=byte_inside)
    tl.store(p_ptr + offs, (p + alpha * (z * m)).to(p_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _masked_kernel(p_ptr, bits_ptr, n, first_group, seed, alpha, tau,
                   GROUP_: tl.constexpr, RADEMACHER: tl.constexpr, MODE: tl.constexpr):
    """p += alpha z m for Sparse MeZO; m from |p| < tau (MODE 0), also packed into bits (1), or read from bits (2).

    bits_ptr points at the byte of the chunk's first element; bit e % 8 of byte e // 8 is element e.
    """
    Q: tl.constexpr = GROUP_ // 4
    pid = tl.program_id(0)
    z0, z1, z2, z3 = _quarters(seed, first_group + pid, Q, RADEMACHER)
    base = pid.to(tl.int64) * GROUP_
    _masked_quarter(p_ptr, bits_ptr, base, 0, Q, z0, alpha, tau, n, MODE)
    _masked_quarter(p_ptr, bits_ptr, base, 1, Q, z1, alpha, tau, n, MODE)
    _masked_quarter(p_ptr, bits_ptr, base, 2, Q, z2, alpha, tau, n, MODE)
    _masked_quarter(p_ptr, bits_ptr, base, 3, Q, z3, alpha, tau, n, MODE)
