"""Exact mode streams large Linear/Embedding weights in row blocks: same bits, one block of memory."""

import pytest
import torch
from torch import nn

import zoo
from conftest import SMALL, bits_equal, lm_batch, perturbing_estimators, snapshot, tiny_llama
from zoo.perturb import BLOCK_SIZE, DirectionField, DirectionKey, ParamSlot, apply_, make_backend, perturbed_copy
from zoo.perturb.blocked import block_rows, streamable

VOCAB = 4100  # x hidden 32: blocks of 2048 rows (one stream block each), the last one 4 rows


def test_block_rows_start_every_block_on_a_stream_block():
    for row_len, rows, target in [(32, 4100, 1), (576, 49152, 1 << 22), (768, 50000, 1 << 20), (1000, 60000, 1 << 22)]:
        per = block_rows(row_len, rows, target)
        assert per is not None and per < rows
        assert (per * row_len) % BLOCK_SIZE == 0
        assert per * row_len <= max(target, BLOCK_SIZE * row_len)
    assert block_rows(32, 2048, 1) is None  # one block would be the whole weight
    assert block_rows(4097, 50000, 1 << 22) is None  # an odd row: the aligned block exceeds the weight


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", ["torch", "cpu", "triton"])
def test_a_perturbed_copy_holds_the_bits_the_inplace_sweep_writes(backend, dtype):
    be = make_backend(backend, torch.device("cpu"))
    field = DirectionField(stream=be.stream)
    g = torch.Generator().manual_seed(0)
    param = (torch.randn(3 * BLOCK_SIZE + 77, generator=g) * 0.05).to(dtype)
    slot = ParamSlot(uid=5, param=param, group={"eps": 1e-3})
    key = DirectionKey(seed=11)
    moved = ParamSlot(uid=5, param=param.clone(), group=slot.group)
    apply_(be, field, [moved], [(key, {5: -1e-3})], at_theta=True)
    copies = [perturbed_copy(be, field, slot, a, min(a + 2 * BLOCK_SIZE, param.numel()), key, -1e-3)
              for a in range(0, param.numel(), 2 * BLOCK_SIZE)]
    assert bits_equal([torch.cat(copies)], [moved.param])
    assert not bits_equal([param], [moved.param])  # the copy was perturbed, the parameter was not


@pytest.mark.parametrize("name", perturbing_estimators())
def test_streamed_exact_steps_equal_held_exact_steps(name):
    """float64, lr > 0: the estimates and the trained weights agree with the held-whole mode."""
    kw = dict(lr=1e-2, eps=1e-3, perturbation="exact", seed=4, **SMALL.get(name, {}))
    a, b = tiny_llama(torch.float64, vocab=VOCAB), tiny_llama(torch.float64, vocab=VOCAB)
    batch = lm_batch(vocab=VOCAB)
    oa = zoo.get(name, a, exact_block=1, **kw)
    ob = zoo.get(name, b, exact_block=0, **kw)
    assert [type(s.module).__name__ for s in oa.perturbation._streamed] == ["Embedding", "Linear"]
    assert ob.perturbation._streamed == []
    for ga, gb in zip(oa.estimate(lambda: a(**batch).loss), ob.estimate(lambda: b(**batch).loss)):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)
    for _ in range(3):
        la, lb = oa.step(lambda: a(**batch).loss), ob.step(lambda: b(**batch).loss)
        torch.testing.assert_close(la, lb, rtol=1e-12, atol=0)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-14)
    assert 0 < oa.perturbation.peak_saved_bytes <= oa.perturbation.bound_bytes
    assert oa.perturbation.peak_saved_bytes < ob.perturbation.peak_saved_bytes


@pytest.mark.parametrize("name", perturbing_estimators())
def test_streamed_exact_restores_half_precision_weights_bit_for_bit(name):
    model = tiny_llama(torch.bfloat16, vocab=VOCAB)
    batch = lm_batch(vocab=VOCAB)
    before = snapshot(model)
    opt = zoo.get(name, model, lr=0.0, eps=1e-2, perturbation="exact", seed=3, exact_block=1, **SMALL.get(name, {}))
    losses = [opt.step(lambda: model(**batch).loss).item() for _ in range(6)]
    assert len(set(losses)) > 1, "the steps did not perturb anything"
    assert bits_equal(before, snapshot(model))


def test_the_default_block_bounds_the_mode_memory_below_the_largest_module():
    """A tied 4100 x 32 embedding is the largest module; streamed, the bound is one block."""
    model = tiny_llama(torch.bfloat16, vocab=VOCAB)
    opt = zoo.get("mezo-sgd", model, lr=0.0, exact_block=1)
    opt.step(lambda: model(**lm_batch(vocab=VOCAB)).loss)
    def own(m):
        return sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))

    tied = (model.model.embed_tokens, model.lm_head)
    block = 2048 * 32 * 2
    assert opt.perturbation.bound_bytes == max([block] + [own(m) for m in model.modules() if m not in tied])
    assert 0 < opt.perturbation.peak_saved_bytes <= opt.perturbation.bound_bytes < own(model.lm_head)
    # the library default streams the embedding of a real-sized model, not the tiny one
    assert zoo.get("mezo-sgd", model, lr=0.0).perturbation._streamed == []


def test_a_bad_token_id_raises_as_torch_does_and_loses_nothing():
    model = tiny_llama(torch.bfloat16, vocab=VOCAB)
    before = snapshot(model)
    opt = zoo.get("mezo-sgd", model, lr=1e-3, exact_block=1)
    bad = {"input_ids": torch.full((2, 5), VOCAB)}
    with pytest.raises(IndexError, match="out of range"):
        opt.step(lambda: model(**bad, labels=bad["input_ids"].clamp_max(VOCAB - 1)).loss)
    assert bits_equal(before, snapshot(model))
    assert all("forward" not in vars(m) for m in model.modules())  # the streamed forwards are uninstalled


def test_which_modules_stream():
    assert streamable(nn.Linear(4, 4)) and streamable(nn.Embedding(4, 4))
    assert not streamable(nn.Embedding(4, 4, max_norm=1.0))  # its forward renormalises the weight in place

    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    assert not streamable(Scaled(4, 4))
    wrapped = nn.Linear(4, 4)
    wrapped.forward = lambda x: x  # as accelerate's hooks wrap a module
    assert not streamable(wrapped)
    assert not streamable(nn.Conv1d(4, 4, 1))


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_exact_block_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="exact_block"):
        zoo.get("mezo-sgd", tiny_llama(), exact_block=bad)
