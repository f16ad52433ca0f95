"""Step time of mezo-sgd against two inference forwards and the original MeZO step.

Run (about 5 minutes on a 2-core CPU):

    pytest benchmarks/test_step_speed.py

Model: the SmolLM2-135M config (LlamaConfig: hidden 576, 30 layers, 9 heads,
3 kv heads, intermediate 1536, vocab 49152, tied embeddings), random weights,
float32, batch 16 x sequence 64, on the CPU. The three benchmarks run in one
session on one model; the last test turns their medians into ratios, writes
them to benchmarks/results/step_speed.json and checks the targets:

    zoo step / (2 x forward)   <= 1.10 (also as the median of 9 alternated pairs)
    zoo step / MeZO original   <= 0.8
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import pytest
import torch

import zoo
from zoo.perturb import DirectionKey, apply_
from mezo_original import MeZOOriginal
from models import random_batch, random_model, smollm2_135m_config

ROUNDS = 5
PAIRS = 9
MEDIANS: dict[str, float] = {}
EXTRA: dict[str, float] = {}


@pytest.fixture(scope="module")
def setup():
    cfg = smollm2_135m_config()
    model = random_model(cfg)
    batch = random_batch(cfg.vocab_size, batch=16, seq=64)
    return model, batch


def _run(benchmark, key, fn):
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    MEDIANS[key] = benchmark.stats.stats.median


@torch.no_grad()
def test_two_forwards(benchmark, setup):
    model, batch = setup
    _run(benchmark, "two_forwards", lambda: (model(**batch).loss, model(**batch).loss))


def test_zoo_mezo_sgd_step(benchmark, setup):
    model, batch = setup
    opt = zoo.get("mezo-sgd", model, lr=1e-7, eps=1e-3)
    EXTRA["default_backend"] = opt.backend.name
    _run(benchmark, "zoo_step", lambda: opt.step(lambda: model(**batch).loss))
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    EXTRA["param_numel"] = sum(p.numel() for p in model.parameters())
    EXTRA["scratch_bytes"] = opt.backend.scratch_bytes()
    EXTRA["param_bytes"] = param_bytes


def test_zoo_torch_backend_step(benchmark, setup):
    model, batch = setup
    opt = zoo.get("mezo-sgd", model, lr=1e-7, eps=1e-3, backend="torch")
    _run(benchmark, "zoo_torch_step", lambda: opt.step(lambda: model(**batch).loss))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_one_sweep(benchmark, setup, backend):
    model, _ = setup
    opt = zoo.get("mezo-sgd", model, backend=backend)
    slots, key = opt._slots, DirectionKey(1, 0)
    coefs = {s.uid: 1e-9 for s in slots}
    _run(benchmark, f"sweep_{backend}", lambda: apply_(opt.backend, opt.field, slots, [(key, coefs)], at_theta=True))


@torch.no_grad()
def test_memory_floor(benchmark, setup):
    model, _ = setup
    params = list(model.parameters())
    _run(benchmark, "inplace_multiply", lambda: [p.mul_(1.0) for p in params])


def test_zoo_exact_step(benchmark, setup):
    model, batch = setup
    opt = zoo.get("mezo-sgd", model, lr=1e-7, eps=1e-3, perturbation="exact")
    _run(benchmark, "zoo_exact_step", lambda: opt.step(lambda: model(**batch).loss))
    EXTRA["exact_saved_bytes"] = opt.perturbation.peak_saved_bytes


def test_mezo_original_step(benchmark, setup):
    model, batch = setup
    opt = MeZOOriginal(model.parameters(), lr=1e-7, eps=1e-3)
    _run(benchmark, "original_step", lambda: opt.step(lambda: model(**batch).loss))


@torch.no_grad()
def test_paired_step_over_two_forwards(setup):
    """Two forwards and a zoo step alternated PAIRS times after a warm-up; the median of the
    per-pair ratios. A slow spell of this shared machine then hits both sides of a pair, where the
    separate medians above can fall in different spells."""
    model, batch = setup
    opt = zoo.get("mezo-sgd", model, lr=1e-7, eps=1e-3)

    def closure():
        return model(**batch).loss

    def timed(fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    forwards, step = (lambda: (closure(), closure())), (lambda: opt.step(closure))
    timed(forwards), timed(step)
    ratios = []
    for i in range(PAIRS):
        if i % 2:  # alternate the order, so a trend within a pair favours neither side
            s, f = timed(step), timed(forwards)
        else:
            f, s = timed(forwards), timed(step)
        ratios.append(s / f)
    EXTRA["paired_ratios"] = ratios
    assert all(r > 0 for r in ratios)


def test_ratios_meet_targets():
    if len(MEDIANS) < 8:
        pytest.fail(f"the eight benchmarks must run in this session first (have {sorted(MEDIANS)})")
    numel = EXTRA["param_numel"]
    ratios = {
        "zoo_over_two_forwards": MEDIANS["zoo_step"] / MEDIANS["two_forwards"],
        "zoo_torch_over_two_forwards": MEDIANS["zoo_torch_step"] / MEDIANS["two_forwards"],
        "zoo_torch_over_original": MEDIANS["zoo_torch_step"] / MEDIANS["original_step"],
        "sweep_cpu_over_memory_floor": MEDIANS["sweep_cpu"] / MEDIANS["inplace_multiply"],
        "sweep_cpu_elements_per_s": numel / MEDIANS["sweep_cpu"],
        "sweep_torch_elements_per_s": numel / MEDIANS["sweep_torch"],
        "zoo_over_original": MEDIANS["zoo_step"] / MEDIANS["original_step"],
        "scratch_over_param_bytes": EXTRA["scratch_bytes"] / EXTRA["param_bytes"],
        "exact_over_two_forwards": MEDIANS["zoo_exact_step"] / MEDIANS["two_forwards"],
        "exact_saved_over_param_bytes": EXTRA["exact_saved_bytes"] / EXTRA["param_bytes"],
    }
    if "paired_ratios" in EXTRA:
        ratios["zoo_over_two_forwards_paired"] = statistics.median(EXTRA["paired_ratios"])
    out = Path(__file__).parent / "results" / "step_speed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "medians_s": MEDIANS, "ratios": ratios, **EXTRA,
        "rounds": ROUNDS, "pairs": PAIRS,
        "command": "pytest benchmarks/test_step_speed.py",
        "date": str(date.today()), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }, indent=1))
    assert ratios["zoo_over_two_forwards"] <= 1.10, ratios
    assert ratios["zoo_torch_over_two_forwards"] <= 1.4, ratios
    assert ratios["zoo_over_original"] <= 0.8, ratios
    assert ratios["scratch_over_param_bytes"] <= 0.01, ratios
