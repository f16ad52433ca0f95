"""AdaZeta's tensor-train adapters: the contraction against the dense product, the placement, and runs on them."""

import math

import pytest
import torch

import zoo
from conftest import bits_equal, stop_at, tiny_llama
from zoo.tuning.tensor_train import TTAdapterConfig, TTLinear, add_tt_adapters, factorize


@pytest.mark.parametrize("n, parts, expected", [(576, 3, [9, 8, 8]), (64, 3, [4, 4, 4]), (4096, 3, [16, 16, 16]),
                                                (7, 3, [7, 1, 1]), (1, 2, [1, 1]), (30, 2, [6, 5])])
def test_factorize_spreads_the_primes_evenly(n, parts, expected):
    got = factorize(n, parts)
    assert got == expected and math.prod(got) == n


@pytest.mark.parametrize("bad", [(0, 3), (8, 0), (True, 2), (8.0, 2)])
def test_factorize_refuses_bad_sizes(bad):
    with pytest.raises(ValueError, match="factorize"):
        factorize(*bad)


def _dense_reference(layer: TTLinear) -> torch.Tensor:
    """W by the definition, entry by entry: a product of the cores' slices (float64)."""
    cores = [c.detach().double() for c in layer.cores]
    ins, outs = layer.in_factors, layer.out_factors
    w = torch.zeros(layer.in_features, layer.out_features, dtype=torch.float64)
    for i in range(layer.in_features):
        idx_in = [(i // math.prod(ins[k + 1:])) % ins[k] for k in range(len(ins))]
        for j in range(layer.out_features):
            idx_out = [(j // math.prod(outs[k + 1:])) % outs[k] for k in range(len(outs))]
            m = torch.ones(1, 1, dtype=torch.float64)
            for core, f in zip(cores, idx_in + idx_out):
                m = m @ core[:, f, :]
            w[i, j] = m[0, 0]
    return w


@pytest.mark.parametrize("ins, outs, rank", [([3, 4], [2, 5], 3), ([2, 3, 2], [4], 2), ([6], [2, 2, 2], 4)])
def test_the_contraction_equals_the_dense_product_in_float64(ins, outs, rank):
    layer = TTLinear(ins, outs, rank, std=0.3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(layer.out_features, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    dense = _dense_reference(layer)
    assert torch.allclose(layer.to_dense(), dense, rtol=1e-12, atol=1e-14)
    x = torch.randn(2, 3, layer.in_features, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(layer(x), x @ dense + layer.bias, rtol=1e-12, atol=1e-13)


def test_initial_scale_and_a_zero_up_projection():
    layer = TTLinear([8, 8, 9], [4, 4, 4], 5, std=0.05, generator=torch.Generator().manual_seed(0))
    w = layer.to_dense()
    assert w.shape == (576, 64) and 0.03 < float(w.detach().std()) < 0.08  # the product of 6 cores has about the asked std
    zero = TTLinear([4, 4, 4], [8, 8, 9], 5, std=0.05, zero_last=True, generator=torch.Generator().manual_seed(0))
    assert not zero.to_dense().any() and zero.cores[0].abs().sum() > 0
    with torch.no_grad():  # the last core moved by ~std: W at about the scale of std, not vanishing
        zero.cores[-1].copy_(torch.randn(zero.cores[-1].shape, generator=torch.Generator().manual_seed(1)) *
                             float(layer.cores[-1].std()))
    assert 0.01 < float(zero.to_dense().detach().std()) < 0.2
    with pytest.raises(ValueError, match="std: must be a finite number > 0"):
        TTLinear([2], [2], 1, std=0.0)


def _adapted(seed=0, dtype=torch.float32):
    model = tiny_llama(dtype=dtype)
    count = add_tt_adapters(model, model.model.layers, TTAdapterConfig(bottleneck=8, rank=3), seed=seed)
    return model, count


def test_adapters_follow_attention_and_mlp_and_start_as_the_identity():
    base = tiny_llama()
    model, count = _adapted()
    assert count == 2 * len(model.model.layers)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".tt_adapter." in n for n in trainable)
    assert all(n.split(".tt_adapter.")[0].endswith(("self_attn", "mlp")) for n in trainable)
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base(input_ids=ids).logits)  # U = 0: nothing changes
        model.model.layers[0].mlp.tt_adapter.up.core5.add_(0.5)
        assert not torch.allclose(model(input_ids=ids).logits, base(input_ids=ids).logits)
    # the same seed builds the same adapters; another seed other ones
    assert bits_equal([p for p in _adapted(0)[0].parameters() if p.requires_grad],
                      [p for p in _adapted(0)[0].parameters() if p.requires_grad])
    assert not bits_equal([p for p in _adapted(0)[0].parameters() if p.requires_grad],
                          [p for p in _adapted(1)[0].parameters() if p.requires_grad])


def test_a_block_without_the_target_module_is_named():
    model = tiny_llama()
    with pytest.raises(ValueError, match="block 0 .* has no module 'ffn'"):
        add_tt_adapters(model, model.model.layers, TTAdapterConfig(targets=("ffn",)))
    with pytest.raises(ValueError, match="rank: must be an integer >= 1"):
        TTAdapterConfig(rank=0)


@pytest.mark.parametrize("name", zoo.available())
def test_every_estimator_trains_the_adapters_and_an_lr_0_exact_step_in_bfloat16_restores_every_bit(name):
    model, _ = _adapted(dtype=torch.bfloat16)
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    opt = zoo.get(name, model, lr=0.0, eps=1e-2, seed=0, perturbation="exact") if name != "forward-grad" else \
        zoo.get(name, model, lr=0.0, seed=0)
    for _ in range(2):
        opt.step(lambda: model(input_ids=ids, labels=ids).loss)
    assert bits_equal(before, model.parameters())
    trained = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in trained)  # float32 adapters on bfloat16 weights
    opt = zoo.get(name, model, lr=1e-2, eps=1e-2, seed=0)
    for _ in range(3):
        opt.step(lambda: model(input_ids=ids, labels=ids).loss)
    moved = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert any(moved) and not any(m for m, p in zip(moved, model.parameters()) if not p.requires_grad)


def _finetune_setup(tmp_path, estimator="mezo-sgd"):
    from conftest import sentiment_file, word_tokenizer
    from zoo.finetune.build import prepare
    from zoo.finetune.loop import FinetuneConfig
    from zoo.tasks import few_shot, user_task

    tmp_path.mkdir(parents=True, exist_ok=True)
    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    built = prepare(tiny_llama(), word_tokenizer(), task, "prompt", "tt-adapter")
    cfg = FinetuneConfig(model="tiny", task=str(tmp_path / "s.tsv"), estimator=estimator, steps=6, k=8,
                         batch_size=4, lr=1e-2, eps=1e-2, eval_every=3, checkpoint_every=2, tuning="tt-adapter")
    return cfg, built, few_shot(task, cfg.k, cfg.seed)


@pytest.mark.parametrize("estimator", ["mezo-sgd", "adam"])
def test_a_tt_adapter_run_resumes_bit_exactly_and_counts_its_forwards(tmp_path, monkeypatch, estimator):
    from zoo.finetune.loop import finetune

    cfg, built, splits = _finetune_setup(tmp_path / "a", estimator)
    straight = finetune(cfg, built, splits, tmp_path / "a" / "run", progress=False)
    final = [p.detach().clone() for p in built.model.parameters()]
    assert straight["trainable_params"] == sum(p.numel() for p in built.model.parameters() if p.requires_grad)
    assert straight["model_calls"] == straight["forward_passes"] == (12 if estimator == "mezo-sgd" else 6)
    cfg, built, splits = _finetune_setup(tmp_path / "b", estimator)
    stop_at(monkeypatch, 5, cfg, built, splits, tmp_path / "b" / "run")
    cfg, fresh, splits = _finetune_setup(tmp_path / "b", estimator)
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    assert bits_equal(final, fresh.model.parameters())
    assert resumed["history"]["loss"] == straight["history"]["loss"]
