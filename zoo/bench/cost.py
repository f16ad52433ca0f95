"""Step time and peak memory of every method on random-init model configs (the `gpu` preset).

Weights do not travel to a lent GPU, and step time and memory do not depend on them, so this
section builds each model from its HF config with random weights and feeds it random token ids
(causal LM loss on a batch x sequence block). Every method runs in a fresh process, as in
`memory.py`, and after the model is built:

    inference       one "step" is two forwards under no_grad: the least a two-point ZO step does
    ZO estimator    one `opt.step(closure)` under no_grad
    sgd, adam       forward, backward, `opt.step()`

The peak memory covers the first step and `rounds` more (lazily created state such as Adam's
moments is in place by then); the step time is the median of those `rounds` steps, each timed
after a device synchronisation. The numbers to read are the ratios against inference: a ZO step
should cost about two forwards of time and the memory of inference (MeZO, Malladi et al. 2023,
section 2); backprop pays for activations and gradients.

Processes run minutes apart, and a shared machine's speed drifts between them (2.5x between runs
of identical work in the cpu preset). So `probe_side_by_side` also times every method in one
process on one model, stepping each in turn for a number of rounds; a ratio of two methods is then
taken within each round, where both met the same machine.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch

from ..memory import reset_peak, rss_now_bytes, rss_peak_bytes
from ..placement import DTYPES
from .memory import run_fresh


def build(spec: dict):
    """(model, batch) for a cost spec: random weights from `spec["config"]` (HF config fields
    with `model_type`), random token ids of shape batch x seq; both seeded by `spec["seed"]`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(spec["config"])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    device = torch.device(spec.get("device", "cpu"))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # fixed weights without touching the caller's RNG
        torch.manual_seed(spec.get("seed", 0))
        with device:
            model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[spec.get("dtype", "float32")])
    model.train(False)
    g = torch.Generator().manual_seed(spec.get("seed", 0))
    ids = torch.randint(0, config.vocab_size, (spec["batch"], spec["seq"]), generator=g).to(device)
    return model, {"input_ids": ids, "labels": ids}


def _step_fn(method: str, model, batch, opt):
    def closure():
        return model(**batch).loss

    if method == "inference":
        def step():
            with torch.no_grad():
                closure()
                closure()
    elif method in ("sgd", "adam"):
        def step():
            opt.zero_grad(set_to_none=True)
            closure().backward()
            opt.step()
    else:
        def step():
            with torch.no_grad():
                opt.step(closure)
    return step


def _optimizer(spec: dict, method: str, model):
    """The optimizer a probe steps (None for inference), at an lr too small to change the work."""
    from .. import estimators
    from ..finetune.loop import FIRST_ORDER

    params = list(model.parameters())
    if method in FIRST_ORDER:
        return FIRST_ORDER[method](params, lr=1e-9)
    if method == "inference":
        return None
    extra = {"exact_block": spec["exact_block"]} if "exact_block" in spec else {}
    return estimators.get(method, params, lr=1e-9, eps=1e-3, seed=spec.get("seed", 0), module=model,
                          perturbation=spec.get("perturbation"), **extra)


def _rounds(spec: dict) -> int:
    rounds = spec.get("rounds", 3)
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    return rounds


def _timed(step, cuda: bool) -> float:
    """Seconds of one `step()`, from a synchronised device to a synchronised device."""
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t


def probe(spec: dict) -> dict:
    """Measures one method (`spec["method"]`) in this process; see the module docstring."""
    from .. import estimators
    from ..finetune.loop import FIRST_ORDER, optimizer_state_bytes

    method, rounds = spec["method"], _rounds(spec)
    model, batch = build(spec)
    cuda = model.device.type == "cuda"
    params = list(model.parameters())
    opt = _optimizer(spec, method, model)
    step = _step_fn(method, model, batch, opt)
    base = torch.cuda.memory_allocated() if cuda else rss_now_bytes()
    reset_peak(cuda)
    times = [_timed(step, cuda) for _ in range(rounds + 1)][1:]  # the first builds lazy state and warms caches
    peak = torch.cuda.max_memory_allocated() if cuda else rss_peak_bytes()
    return {"method": method, "median_step_s": statistics.median(times), "step_s": times,
            "base_bytes": base, "peak_bytes": peak,
            "measure": "torch.cuda.max_memory_allocated" if cuda else "peak RSS (VmHWM)",
            "params": sum(p.numel() for p in params), "param_bytes": sum(p.numel() * p.element_size() for p in params),
            "extra_state_bytes": 0 if opt is None else optimizer_state_bytes(opt, method in FIRST_ORDER),
            "perturbation": opt.perturbation.name if isinstance(opt, estimators.ZOOptimizer) else None,
            "exact_saved_bytes": getattr(getattr(opt, "perturbation", None), "peak_saved_bytes", None),
            "device": torch.cuda.get_device_name() if cuda else "cpu"}


def probe_side_by_side(spec: dict) -> dict:
    """Every method of `spec["methods"]` on one model in this process, stepped in turn.

    After one warm-up step each, `spec["rounds"]` rounds step every method once; round i starts
    i methods later in the list, so neither a slow spell nor a trend within a round favours one
    method. Returns the step times per method, round by round (`step_s[method][i]`). The methods
    share the model; at the probes' lr of 1e-9 they leave it as it was, to float precision.
    """
    methods, rounds = list(spec["methods"]), _rounds(spec)
    model, batch = build(spec)
    cuda = model.device.type == "cuda"
    steps = {m: _step_fn(m, model, batch, _optimizer(spec, m, model)) for m in methods}
    for step in steps.values():
        _timed(step, cuda)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(rounds):
        for m in methods[i % len(methods):] + methods[:i % len(methods)]:
            times[m].append(_timed(steps[m], cuda))
    return {"methods": methods, "rounds": rounds, "step_s": times,
            "device": torch.cuda.get_device_name() if cuda else "cpu"}


def measure(spec: dict, methods: list[str]) -> list[dict]:
    """`probe` for each method, each in its own subprocess; rows in the order given."""
    return [run_fresh("zoo.bench.cost", {**spec, "method": m}, f"cost probe of {m}") for m in methods]


def measure_side_by_side(spec: dict, methods: list[str], rounds: int) -> dict:
    """`probe_side_by_side` in a fresh process, so the runs before it leave nothing in its memory."""
    return run_fresh("zoo.bench.cost", {**spec, "methods": methods, "rounds": rounds}, "side-by-side step timing")


if __name__ == "__main__":
    _spec = json.loads(sys.argv[1])
    print(json.dumps(probe_side_by_side(_spec) if "methods" in _spec else probe(_spec)))
