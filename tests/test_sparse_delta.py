"""SpIEL-style sparse deltas: the forward against the dense W + Delta, drop-and-regrow, estimators, resume."""

import pytest
import torch

import zoo
from conftest import bits_equal, lm_batch, stop_at, tiny_llama
from zoo.finetune.adapters import transformer_blocks
from zoo.tuning.sparse_delta import SparseDeltaConfig, add_sparse_deltas, sparse_deltas, update_index_sets


def _sparse(dtype=torch.float32, **config):
    model = tiny_llama(dtype)
    add_sparse_deltas(model, transformer_blocks(model), SparseDeltaConfig(**config), seed=3)
    return model


@pytest.mark.parametrize("regrowth", ["random", "probe"])
def test_the_forward_equals_the_dense_weight_plus_delta_in_float64(regrowth):
    model = _sparse(torch.float64, density=0.1, regrowth=regrowth)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for d in sparse_deltas(model):
            d.values.copy_(torch.randn(d.values.shape, generator=gen, dtype=d.values.dtype))
            d.probe_values.copy_(torch.randn(d.probe_values.shape, generator=gen, dtype=d.values.dtype))
    dense = tiny_llama(torch.float64)
    modules = dict(dense.named_modules())
    with torch.no_grad():
        for name, module in model.named_modules():
            if hasattr(module, "sparse_delta"):
                flat = torch.zeros(module.weight.numel(), dtype=torch.float64)
                d = module.sparse_delta
                for index, values in ((d.index, d.values), (d.probe_index, d.probe_values)):
                    for i, v in zip(index.tolist(), values.tolist()):  # entry by entry
                        flat[i] += v
                modules[name].weight.add_(flat.view_as(module.weight))
        got, want = model(**lm_batch()).logits, dense(**lm_batch()).logits
        untouched = tiny_llama(torch.float64)(**lm_batch()).logits
    assert (want - untouched).abs().max() > 1e-2  # the deltas matter
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_sizes_and_a_frozen_model():
    model = _sparse(density=0.05, regrowth="probe", drop=0.2, probes=2)
    deltas = sparse_deltas(model)
    assert len(deltas) == 2 * 7  # q, k, v, o, gate, up, down of each block
    for d in deltas:
        count = round(0.05 * d.shape[0] * d.shape[1])
        assert d.values.numel() == count and d.probe_values.numel() == 2 * max(1, int(0.2 * count))
        both = d.index.tolist() + d.probe_index.tolist()
        assert len(set(both)) == len(both) and min(both) >= 0 and max(both) < d.shape[0] * d.shape[1]
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all("sparse_delta" in n for n in trained)


def test_random_regrowth_drops_the_smallest_and_regrows_elsewhere_at_zero():
    model = _sparse(density=0.1, every=3, drop=0.25)
    d = sparse_deltas(model)[0]
    with torch.no_grad():
        d.values.copy_(torch.arange(d.values.numel(), 0, -1, dtype=torch.float32) * 0.01)  # the last are smallest
    before_index, before_values = d.index.clone(), d.values.detach().clone()
    assert not update_index_sets(model, 1)  # only after every third step
    assert update_index_sets(model, 2)
    m = int(0.25 * d.values.numel())
    dropped = list(range(d.values.numel() - m, d.values.numel()))
    kept = [i for i in range(d.values.numel()) if i not in dropped]
    assert torch.equal(d.index[kept], before_index[kept]) and torch.equal(d.values[kept], before_values[kept])
    new = d.index[dropped].tolist()
    assert (d.values[dropped] == 0).all() and not set(new) & set(before_index.tolist()) and len(set(new)) == m
    again = _sparse(density=0.1, every=3, drop=0.25)
    e = sparse_deltas(again)[0]
    with torch.no_grad():
        e.values.copy_(before_values)
    update_index_sets(again, 2)
    assert torch.equal(e.index, d.index)  # keyed by (seed, step, matrix): the same draw every time


def test_probe_regrowth_promotes_the_candidates_whose_deltas_moved_most():
    model = _sparse(density=0.1, every=1, drop=0.25, regrowth="probe", probes=2)
    d = sparse_deltas(model)[0]
    m = int(0.25 * d.values.numel())
    with torch.no_grad():
        d.values.copy_(torch.linspace(1.0, 2.0, d.values.numel()))
        d.values[:m] = 0.001  # the first m are the smallest
        d.probe_values.copy_(torch.linspace(0.0, 3.0, d.probe_values.numel()))  # the last m move most
    probes, probe_values = d.probe_index.clone(), d.probe_values.detach().clone()
    update_index_sets(model, 0)
    best = list(range(probes.numel() - 1, probes.numel() - 1 - m, -1))  # by |delta|, largest first
    assert d.index[:m].tolist() == probes[best].tolist()
    assert torch.equal(d.values[:m], probe_values[best])
    assert (d.probe_values == 0).all() and not set(d.probe_index.tolist()) & set(d.index.tolist())


def test_bad_settings_are_refused():
    for bad, match in [({"density": 0}, "density"), ({"density": 1.5}, "density"), ({"drop": 1.0}, "drop"),
                       ({"regrowth": "magnitude"}, "regrowth"), ({"every": 0}, "every")]:
        with pytest.raises(ValueError, match=match):
            SparseDeltaConfig(**bad)
    from zoo.finetune.adapters import apply_tuning

    with pytest.raises(ValueError, match="only for tuning 'sparse-delta'"):
        apply_tuning(tiny_llama(), "lora", options={"density": 0.1})
    with pytest.raises(ValueError, match="tuning 'sparse-delta'"):
        apply_tuning(tiny_llama(), "sparse-delta", options={"densty": 0.1})


@pytest.mark.parametrize("name", zoo.available())
def test_every_estimator_trains_the_deltas_and_an_lr_0_exact_step_in_bfloat16_restores_every_bit(name):
    model = _sparse(torch.bfloat16, density=0.05, regrowth="probe")
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    exact = {} if name == "forward-grad" else {"perturbation": "exact", "eps": 1e-2}
    opt = zoo.get(name, model, lr=0.0, seed=0, **exact)
    for _ in range(2):
        opt.step(lambda: model(input_ids=ids, labels=ids).loss)
    assert bits_equal(before, model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    opt = zoo.get(name, model, lr=1e-2, eps=1e-2, seed=0)
    for _ in range(3):
        opt.step(lambda: model(input_ids=ids, labels=ids).loss)
    moved = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert any(moved) and not any(m for m, p in zip(moved, model.parameters()) if not p.requires_grad)


def _setup(tmp_path, estimator, regrowth):
    from conftest import sentiment_file, word_tokenizer
    from zoo.finetune.build import prepare
    from zoo.finetune.loop import FinetuneConfig
    from zoo.tasks import few_shot, user_task

    tmp_path.mkdir(parents=True, exist_ok=True)
    task = user_task(sentiment_file(tmp_path / "s.tsv"))
    options = {"density": 0.05, "every": 2, "regrowth": regrowth}
    built = prepare(tiny_llama(), word_tokenizer(), task, "prompt", "sparse-delta", tuning_options=options)
    cfg = FinetuneConfig(model="tiny", task=str(tmp_path / "s.tsv"), estimator=estimator, steps=7, k=8,
                         batch_size=4, lr=1e-2, eps=1e-2, eval_every=3, checkpoint_every=2, tuning="sparse-delta",
                         tuning_options=options)
    return cfg, built, few_shot(task, cfg.k, cfg.seed)


def _state(model):
    return [t.detach().clone() for t in (*model.parameters(), *model.buffers())]


@pytest.mark.parametrize("estimator,regrowth", [("mezo-sgd", "random"), ("mezo-adam", "probe"), ("adam", "probe")])
def test_a_sparse_delta_run_resumes_bit_exactly_with_its_index_sets(tmp_path, monkeypatch, estimator, regrowth):
    from zoo.finetune.loop import finetune
    from zoo.finetune.runs import load_run_weights

    cfg, built, splits = _setup(tmp_path / "a", estimator, regrowth)
    start = [d.index.clone() for d in sparse_deltas(built.model)]
    straight = finetune(cfg, built, splits, tmp_path / "a" / "run", progress=False)
    final = _state(built.model)
    assert any(not torch.equal(a, d.index) for a, d in zip(start, sparse_deltas(built.model)))  # the sets moved
    assert straight["model_calls"] == straight["forward_passes"] == (14 if estimator != "adam" else 7)
    # from the checkpoint of step 4 (the sets changed after steps 2 and 4)
    cfg, built, splits = _setup(tmp_path / "b", estimator, regrowth)
    stop_at(monkeypatch, 5, cfg, built, splits, tmp_path / "b" / "run")
    cfg, fresh, splits = _setup(tmp_path / "b", estimator, regrowth)
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    assert bits_equal(final, _state(fresh.model)) and resumed["history"]["loss"] == straight["history"]["loss"]
    if estimator != "adam":  # a ZO run's weights and index sets, rebuilt from its loss log alone
        (tmp_path / "a" / "run" / "checkpoint.pt").unlink()
        cfg, again, splits = _setup(tmp_path / "c", estimator, regrowth)
        load_run_weights(tmp_path / "a" / "run", again.model, progress=False)
        assert bits_equal(final, _state(again.model))
