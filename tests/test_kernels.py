"""The Philox kernels: the C kernel, the Triton kernel (interpreted), and the reference agree."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.perturb import BLOCK_SIZE, DirectionField, DirectionKey, ParamSlot, apply_, make_backend
from zoo.perturb.backend import resolve_backend
from zoo.perturb.kernels import MASK_FROM_BITS, cpu, triton_ops

from conftest import bits_equal, check_masked_sweep, tiny_llama, without_masked_fusion
from reference import philox_stream

pytestmark = pytest.mark.skipif(not cpu.available(), reason=f"no C compiler here: {cpu.unavailable_reason()}")
needs_interpreter = pytest.mark.skipif(
    not triton_ops.available("cpu"), reason="run with TRITON_INTERPRET=1 and triton installed (test_backends does)"
)
ROOT = Path(__file__).resolve().parents[1]
SEED = (1 << 62) + 987654321


def ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.view(torch.int32).long() - b.view(torch.int32).long()).abs()


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
@pytest.mark.parametrize("start,n", [(0, 10), (0, 3 * 4096 + 17), (4096 * 5, 9000), (BLOCK_SIZE * 7, 4096)])
def test_cpu_kernel_equals_reference_bits(distribution, start, n):
    ref = philox_stream(SEED, start + n, distribution)[start:]
    got = cpu.fill_(torch.empty(n), start, SEED, distribution)
    assert bits_equal([got], [ref])


def test_cpu_kernel_rejects_misaligned_or_wrong_tensors():
    with pytest.raises(ValueError, match="multiple of 4096"):
        cpu.fill_(torch.empty(8), 100, SEED, "gaussian")
    with pytest.raises(ValueError, match="writes float32"):
        cpu.fill_(torch.empty(8, dtype=torch.float64), 0, SEED, "gaussian")
    with pytest.raises(ValueError, match="contiguous"):
        cpu.fill_(torch.empty(8, 2)[:, 0], 0, SEED, "gaussian")


def test_fused_axpy_equals_fill_then_fma():
    p = torch.randn(3 * 4096 + 5, generator=torch.Generator().manual_seed(0))
    z = cpu.fill_(torch.empty_like(p), 4096, SEED, "gaussian")
    alpha = float(np.float32(-0.37))
    # fmaf rounds once: the float32 rounding of the exact alpha z + p (exact in float64 up to double rounding)
    expected = (alpha * z.double() + p.double()).float()
    got = cpu.axpy_(p.clone(), 4096, SEED, "gaussian", -0.37)
    assert ulps(got, expected).max() <= 1 and (ulps(got, expected) == 0).float().mean() > 0.999


@needs_interpreter
@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_cpu_kernel_matches_triton_interpreter(distribution):
    n, start = 2 * 4096 + 300, 4096 * 3
    tri = triton_ops.fill_(torch.empty(n), start, SEED, distribution)
    got = cpu.fill_(torch.empty(n), start, SEED, distribution)
    if distribution == "rademacher":
        assert bits_equal([got], [tri])
    else:
        # same Philox integers and uniforms; numpy's float32 log/cos/sin are within
        # 3 ulp of the correctly rounded ones the C kernel computes
        assert ulps(got, tri).max() <= 4
        assert (ulps(got, tri) == 0).float().mean() > 0.5


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_combine_is_one_rounding_of_the_float32_sum(dtype):
    p = torch.randn(4096 + 77, generator=torch.Generator().manual_seed(1)).to(dtype)
    seeds, coefs = [SEED, SEED + 1, 17], [0.5, -1.25, 0.01]
    acc = torch.zeros(p.numel())
    for s, c in zip(seeds, coefs):
        acc += c * triton_ops.fill_(torch.empty(p.numel()), 0, s, "gaussian")
    expected = (p.float() * 0.9 + acc).to(dtype)
    got = p.clone()
    assert triton_ops.combine_(got, 0, seeds, coefs, 0.9, "gaussian")
    assert (got.float() - expected.float()).abs().max() <= 2e-6 * expected.float().abs().max() + (
        0 if dtype == torch.float32 else expected.float().abs().max() * 2**-7
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cpu_backend_restores_every_dtype(dtype):
    """+eps z then -eps z through the fused kernel (float32) or the generic sweep returns the same bits."""
    p = torch.randn(3 * BLOCK_SIZE + 11, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype)
    slot = ParamSlot(0, p.clone(), {"eps": 1.0})
    backend = make_backend("cpu")
    field = DirectionField(stream=backend.stream)
    key = DirectionKey(5, 0)
    apply_(backend, field, [slot], [(key, {0: 0.25})], at_theta=True)
    assert not torch.equal(slot.param, p)
    z = field.materialize(slot, key).to(torch.float64)
    moved = (slot.param.double() - p.double()).abs().max().item()
    assert moved > 0.5 and (slot.param.double() - (p.double() + 0.25 * z)).abs().max() <= 0.02 * moved


def test_auto_picks_the_c_kernel_on_cpu_and_env_overrides(monkeypatch):
    monkeypatch.delenv("ZOO_BACKEND", raising=False)
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"
    assert zoo.get("mezo-sgd", tiny_llama()).backend.name == "cpu"
    monkeypatch.setenv("ZOO_BACKEND", "torch")
    assert zoo.get("mezo-sgd", tiny_llama()).backend.name == "torch"
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("cuda-magic")


def test_resume_refuses_a_state_dict_of_another_stream():
    model = tiny_llama()
    saved = zoo.get("mezo-sgd", model, backend="torch").state_dict()
    with pytest.raises(ValueError, match="stream"):
        zoo.get("mezo-sgd", model, backend="cpu").load_state_dict(saved)


def test_a_state_dict_that_names_no_stream_is_torch_generators():
    """zoo saved no stream name before it had philox: such a checkpoint resumes only on torch-generator."""
    model = tiny_llama()
    saved = zoo.get("mezo-sgd", model, backend="torch").state_dict()
    del saved["zo"]["stream"]
    with pytest.raises(ValueError, match="stream 'torch-generator'.*stream 'philox'"):
        zoo.get("mezo-sgd", model, backend="cpu").load_state_dict(saved)
    zoo.get("mezo-sgd", model, backend="torch").load_state_dict(saved)


def test_cpu_and_triton_backends_share_a_state_dict():
    pytest.importorskip("triton")
    model = tiny_llama()
    saved = zoo.get("mezo-sgd", model, backend="cpu").state_dict()
    zoo.get("mezo-sgd", model, backend="triton").load_state_dict(saved)  # same stream: accepted


#: Estimators whose sweeps are another's with other coefficients (zo-sign, zo-cons, one-sided and
#: forward-grad: the two-point sweeps; zo-momentum: Adam's chunked rule; lozo: SubZero's subspace
#: path), so a backend that passes the others passes them: left out of the reruns below, which
#: keep hizoo (preconditioned z), mezo-svrg (the anchor swap) and block-zo (per-block terms).
SAME_SWEEPS = ("zo-sign", "zo-cons", "one-sided", "forward-grad", "zo-momentum", "lozo")
_NEW_LEFT_OUT = " and ".join(f"not {name}" for name in SAME_SWEEPS)

#: The estimator tests, rerun with `auto` meaning another backend. The Triton
#: interpreter runs numpy per program, so it gets the tests that pin every
#: estimator's values and failure handling (about 2 minutes), not the whole set.
ESTIMATOR_TESTS = {
    "torch": [
        "tests/test_reference.py",
        "tests/test_exact.py",
        "tests/test_determinism.py",
        "tests/test_descent.py",
        "tests/test_statistics.py",
        "tests/test_faults.py",
        "-k", _NEW_LEFT_OUT,
    ],
    # Under the interpreter each step costs seconds: the six two-point estimators only (less n-spsa).
    # hizoo's preconditioned z takes the generic chunk path, not a Triton kernel, and mezo-svrg's swap
    # and block-zo's per-block terms run the two-point kernels with other coefficients.
    "triton": ["tests/test_reference.py", "tests/test_faults.py", "tests/test_determinism.py", "-k",
               f"not n-spsa and {_NEW_LEFT_OUT} and not hizoo and not mezo-svrg and not block-zo"
               " and not raising_closure"],
}


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_estimator_suite_passes_on_backend(backend):
    """Every estimator passes its tests on every backend (Triton under its CPU interpreter)."""
    if backend == "triton":
        pytest.importorskip("triton")
    env = {**os.environ, "ZOO_BACKEND": backend, "TRITON_INTERPRET": "1" if backend == "triton" else "0"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *ESTIMATOR_TESTS[backend]]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and " skipped" not in out.stdout, out.stdout[-1000:]


def test_portable_build_draws_the_same_bits():
    """Without -march=native (the fallback flags) the kernel still draws identical z: it calls no libm."""
    import ctypes

    portable = ctypes.CDLL(str(cpu._build(list(cpu._FLAG_SETS[1]), list(cpu._LIBS[1]))))
    portable.zoo_fill.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int]
    n = 5 * 4096 + 3
    for code, dist in enumerate(["gaussian", "rademacher"]):
        a = torch.empty(n)
        portable.zoo_fill(a.data_ptr(), n, 8192, SEED, code)
        assert bits_equal([a], [cpu.fill_(torch.empty(n), 8192, SEED, dist)])
    # the update sweep too (fmaf rounds once on any CPU), so a trajectory log replays on either build
    portable.zoo_axpy_f32.argtypes = portable.zoo_fill.argtypes + [ctypes.c_float]
    p = torch.randn(n, generator=torch.Generator().manual_seed(1))
    b = p.clone()
    portable.zoo_axpy_f32(b.data_ptr(), n, 8192, SEED, 0, -0.37)
    assert bits_equal([b], [cpu.axpy_(p.clone(), 8192, SEED, "gaussian", -0.37)])


_COMPILE = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from zoo.perturb.kernels import triton_philox as tp

target = GPUTarget("cuda", 90, 32)
sig = {"p_ptr": sys.argv[1], "n": "i64", "first_group": "i64", "seeds_ptr": "*i64", "alphas_ptr": "*fp32",
       "ndir": "i32", "decay": "fp32", "GROUP_": "constexpr", "RADEMACHER": "constexpr", "SCALE_P": "constexpr"}
for rademacher in (False, True):
    src = ASTSource(fn=tp._combine_kernel, signature=sig,
                    constexprs={"GROUP_": 4096, "RADEMACHER": rademacher, "SCALE_P": True})
    print(triton.compile(src, target=target).asm["ptx"])
fill = ASTSource(fn=tp._fill_kernel, constexprs={"GROUP_": 4096, "RADEMACHER": False},
                 signature={"out_ptr": "*fp32", "n": "i64", "first_group": "i64", "seed": "i64",
                            "GROUP_": "constexpr", "RADEMACHER": "constexpr"})
print(triton.compile(fill, target=target).asm["ptx"])
"""


@pytest.mark.parametrize("dtype", ["*bf16", "*fp16", "*fp32"])
def test_triton_kernels_compile_for_a_gpu_without_one(dtype):
    """The kernels lower to PTX for an H100 (sm_90): what the interpreter cannot check.

    Compiled in a child process, because this one runs Triton's interpreter.
    """
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    out = subprocess.run([sys.executable, "-c", _COMPILE, dtype], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    ptx = out.stdout
    assert ptx.count(".entry _combine_kernel") == 2 and ".entry _fill_kernel" in ptx
    assert "mul.hi.u32" in ptx  # Philox's multiplies, in registers


@pytest.mark.parametrize("threads", [1, 2])
def test_masked_kernel_equals_the_unfused_sparse_sweep_bit_for_bit(threads):
    """Sparse MeZO's three sweeps (+eps z at theta, -2 eps z and the fused restore-update perturbed)."""
    from zoo.perturb import MagnitudeMask

    n = 3 * BLOCK_SIZE + 4099  # a tail that ends mid-byte of the bitmask
    theta = torch.randn(n, generator=torch.Generator().manual_seed(3))
    theta[:64] = 0.0
    theta[1:64:2] = -0.0  # signed zeros: z * 0 in the unfused path decides their sign
    tau = float(theta.abs().quantile(0.4))
    tau32 = torch.tensor(tau, dtype=torch.float32)
    theta[100:110] = tau32  # on the threshold: not in the mask (strictly below)
    theta[110:120] = torch.nextafter(tau32, torch.tensor(0.0))
    results = []
    for fused in (True, False):
        backend = make_backend("cpu", threads=threads, chunk_size=BLOCK_SIZE)
        stream = backend.stream if fused else without_masked_fusion(backend.stream)
        mask = MagnitudeMask(sparsity=0.6)
        # tau = 0 gives an empty mask (set here directly: MagnitudeMask itself perturbs such a tensor
        # densely); in the unfused path its -0.0 entries become +0.0 wherever z * 0 is +0, and the
        # kernel must agree
        zeros = torch.zeros(BLOCK_SIZE + 3)
        zeros[::2] = -0.0
        mask.thresholds.update({0: tau, 1: 0.0})
        field = DirectionField(stream=stream, magnitude=mask)
        slots = [ParamSlot(0, theta.clone(), {"eps": 1.0}), ParamSlot(1, zeros.clone(), {"eps": 1.0})]
        key = DirectionKey(11, 0)
        field.begin_step(slots, base_seed=0, step=0, step_seed=0, cache_masks=True)
        for coef, at_theta in ((1e-3, True), (-2e-3, False), (0.7, False)):
            apply_(backend, field, slots, [(key, {0: coef, 1: coef})], at_theta=at_theta)
        field.end_step()
        results.append([s.param.clone() for s in slots])
    assert bits_equal(results[0], results[1])
    assert torch.equal(results[0][1], zeros) and not bits_equal([results[0][1]], [zeros])
    results = [r[0] for r in results]
    moved = results[0] != theta
    assert moved[110:120].all() and not moved[100:110].any()
    assert 0.3 < moved.float().mean().item() < 0.5


def test_masked_kernel_refuses_a_missing_or_short_bitmask():
    p = torch.zeros(4096)
    with pytest.raises(ValueError, match="uint8 CPU bitmask"):
        cpu.axpy_masked_(p, 0, SEED, "gaussian", 1.0, 0.5, None, MASK_FROM_BITS)
    with pytest.raises(ValueError, match="too short"):
        cpu.axpy_masked_(p, 0, SEED, "gaussian", 1.0, 0.5, torch.zeros(10, dtype=torch.uint8), MASK_FROM_BITS)
    with pytest.raises(ValueError, match="mode"):
        cpu.axpy_masked_(p, 0, SEED, "gaussian", 1.0, 0.5, None, 3)


@needs_interpreter
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_masked_kernel_equals_the_unfused_sparse_sweep(dtype):
    """The Triton masked sweep takes the unfused path's mask decisions (tau rounded as torch rounds it)."""
    check_masked_sweep("triton", dtype, "cpu")
