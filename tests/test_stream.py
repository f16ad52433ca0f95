"""The noise stream: a pure function of (seed, direction, parameter uid, element)."""

import math

import pytest
import torch

from zoo.perturb import (
    BLOCK_SIZE,
    DirectionField,
    DirectionKey,
    MagnitudeMask,
    ParamSlot,
    TorchBackend,
    Workspace,
    apply_,
    make_backend,
    make_sampler,
)
from zoo.perturb.kernels import triton_ops
from zoo.perturb.masks import _pack_into, _unpack, quantile_by_selection

from conftest import bits_equal


def _slots(sizes, dtype=torch.float32):
    return [ParamSlot(uid, torch.zeros(n, dtype=dtype), {"eps": 1.0}) for uid, n in enumerate(sizes)]


#: Every backend that can run here; Triton runs under its interpreter (TRITON_INTERPRET=1).
BACKENDS = ["torch", "cpu"] + (["triton"] if triton_ops.available("cpu") else [])


def _draw(field, sizes, key, chunk_size, threads, order=None, backend="torch"):
    slots = _slots(sizes)
    backend = make_backend(backend, chunk_size=chunk_size, threads=threads)
    field.stream = backend.stream
    todo = slots if order is None else [slots[i] for i in order]
    apply_(backend, field, todo, [(key, {s.uid: 1.0 for s in slots})], at_theta=True)
    return [s.param for s in slots]


SIZES = [3 * BLOCK_SIZE + 123, 17, BLOCK_SIZE]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sampler", ["gaussian", "rademacher"])
def test_z_independent_of_chunk_size_threads_and_order(sampler, backend):
    field = DirectionField(sampler)
    key = DirectionKey(1234, 0)
    ref = _draw(field, SIZES, key, BLOCK_SIZE, 1, backend=backend)
    assert bits_equal(ref, _draw(field, SIZES, key, 4 * BLOCK_SIZE, 2, backend=backend))
    assert bits_equal(ref, _draw(field, SIZES, key, 10**9, 2, order=[2, 0, 1], backend=backend))
    slot = _slots(SIZES)[0]
    assert bits_equal([ref[0]], [field.materialize(slot, key)])


def test_z_depends_on_seed_direction_and_uid():
    field = DirectionField()
    a = _draw(field, [1000, 1000], DirectionKey(1, 0), BLOCK_SIZE, 1)
    b = _draw(field, [1000, 1000], DirectionKey(2, 0), BLOCK_SIZE, 1)
    c = _draw(field, [1000, 1000], DirectionKey(1, 1), BLOCK_SIZE, 1)
    assert not torch.equal(a[0], a[1])  # two parameters, two streams
    assert not torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_stream_never_touches_global_rng():
    state = torch.random.get_rng_state()
    _draw(DirectionField("sphere" if False else "gaussian"), SIZES, DirectionKey(5, 0), BLOCK_SIZE, 2)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_gaussian_and_rademacher_moments(backend):
    n = 1 << 20
    z = _draw(DirectionField("gaussian"), [n], DirectionKey(9, 0), BLOCK_SIZE, 2, backend=backend)[0].double()
    # mean 0 and variance 1 within 6 standard errors
    assert abs(z.mean().item()) < 6 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 6 * math.sqrt(2 / n)
    assert abs((z**4).mean().item() - 3) < 6 * math.sqrt(96 / n)
    r = _draw(DirectionField("rademacher"), [n], DirectionKey(9, 0), BLOCK_SIZE, 2, backend=backend)[0]
    assert set(r.unique().tolist()) == {-1.0, 1.0}
    assert abs(r.double().mean().item()) < 6 / math.sqrt(n)


def test_sampler_names_and_errors():
    assert make_sampler("sphere").normalized
    with pytest.raises(ValueError, match="sampler"):
        make_sampler("cauchy")


def test_block_alignment_is_enforced():
    field = DirectionField()
    with pytest.raises(ValueError, match="multiple of BLOCK_SIZE"):
        field.fill_(torch.empty(10), _slots([100])[0], DirectionKey(0), 5, Workspace())


def test_mask_bits_roundtrip():
    g = torch.Generator().manual_seed(0)
    for n in [8, 13, BLOCK_SIZE + 5]:
        m = torch.rand(n, generator=g) < 0.3
        bits = torch.empty(math.ceil(n / 8), dtype=torch.uint8)
        _pack_into(bits, 0, m)
        assert torch.equal(_unpack(bits, 0, n), m)


def test_magnitude_mask_threshold_is_a_quantile():
    mask = MagnitudeMask(sparsity=0.75)
    slot = ParamSlot(0, torch.linspace(-1, 1, 4001), {"eps": 1.0})
    mask.begin_step([slot], cache=False)
    kept = mask.mask(slot, 0, slot.flat(), at_theta=True).float().mean().item()
    assert abs(kept - 0.25) < 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantile_by_selection_has_torch_quantiles_bits(dtype):
    gen = torch.Generator().manual_seed(3)
    # the sparsities' own q (1 - 0.9 is 0.0999...98 in binary), fractions whose rank is inexact, both ends
    qs = [1 - 0.75, 1 - 0.5, 1 - 0.9, 1 / 3, 2 / 7, 0.0, 1.0, 0.999]
    sizes = [1, 2, 3, 7, 100, 4097, 65537, 884736]
    for n in sizes:
        values = torch.randn(n, generator=gen, dtype=dtype).abs()
        values[: n // 3] = values[n // 2]  # ties, as a weight clipped or quantised to one value makes
        for q in qs:
            assert quantile_by_selection(values, q) == torch.quantile(values, q).item(), (n, q)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        quantile_by_selection(torch.ones(2, 2), 0.5)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        quantile_by_selection(torch.ones(0), 0.5)


def test_magnitude_mask_never_freezes_a_tensor_for_good():
    mostly_zero = torch.zeros(1000)
    mostly_zero[:200] = torch.linspace(0.1, 1.0, 200)  # 80% zeros: quantile 0.25 of |theta| is 0
    cases = [(0.75, torch.zeros(300)), (0.75, mostly_zero), (0.0, torch.linspace(-1, 1, 101))]
    for sparsity, theta in cases:
        mask = MagnitudeMask(sparsity=sparsity)
        slot = ParamSlot(0, theta.clone(), {"eps": 1.0})
        mask.begin_step([slot], cache=False)
        assert mask.thresholds[0] == math.inf and mask.mask(slot, 0, slot.flat(), at_theta=True).all()


def test_sparse_mezo_trains_a_zero_initialised_head():
    import zoo

    torch.manual_seed(0)
    body, head = torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    model = torch.nn.Sequential(body, torch.nn.Tanh(), head)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    opt = zoo.get("sparse-mezo", model, lr=0.1, eps=1e-2, seed=0)
    body_before = body.weight.detach().clone()
    opt.step(lambda: torch.nn.functional.cross_entropy(model(x), y))
    assert head.weight.count_nonzero() == head.weight.numel() and head.bias.count_nonzero() == 2
    moved = body.weight != body_before
    assert 0 < moved.float().mean() < 1  # the pretrained-like body stays sparse


def test_sweep_scratch_memory_is_a_fixed_chunk():
    """Extra memory of a sweep: threads x buffers x chunk, not the largest parameter."""
    big = 100 * BLOCK_SIZE
    backend = TorchBackend(chunk_size=BLOCK_SIZE, threads=2)
    slots = _slots([big])
    key = DirectionKey(3, 0)
    apply_(backend, DirectionField(), slots, [(key, {0: 1.0})], at_theta=True, decay={0: 0.5})
    # at most 2 buffers (z, accumulator) of one chunk per thread
    assert 0 < backend.scratch_bytes() <= 2 * 2 * BLOCK_SIZE * 4
    assert backend.scratch_bytes() <= big * 4 / 25
