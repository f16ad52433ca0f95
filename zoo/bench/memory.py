"""Peak memory of training steps against inference on the same batch.

Each method is measured in a fresh Python process, so that memory one method freed (and the
allocator kept) cannot hide another's. In that process the model is loaded and the batch
encoded; then the peak is reset and two inference forwards (or two training steps) run:

    CPU:  the peak resident set size, `VmHWM` of /proc/self/status, reset by writing 5 to
          /proc/self/clear_refs (Linux >= 4.0);
    GPU:  torch.cuda.max_memory_allocated after torch.cuda.reset_peak_memory_stats.

A ZO step should cost the memory of inference (MeZO, Malladi et al. 2023, section 2), so the
ratio peak(method) / peak(inference) is the number to read; backprop pays for activations and
gradients, Adam for two moments more.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from ..memory import reset_peak, rss_now_bytes, rss_peak_bytes
from ..placement import dtype_of

STEPS = 2  # the second step sees lazily created state (moments, masks) already in place


@torch.no_grad()
def page_in(model: torch.nn.Module) -> None:
    """Reads every weight once, so that the baseline RSS holds them.

    transformers maps a safetensors file into memory and the OS reads a page in when it is first
    touched, so without this the first forward's peak includes the weights (about 520 MiB of
    SmolLM2-135M's 538 MB), and "working memory" would measure paging, not activations.
    """
    for t in list(model.parameters()) + list(model.buffers()):
        t.sum()


def probe(spec: dict) -> dict:
    """Measures one method in this process. `spec` holds model, task, mode, tuning, template,
    method ("inference", a ZO estimator's name, "sgd" or "adam"), batch, k, seed, device, and
    optionally dtype, a ZO perturbation mode (default: the estimator's) and exact_block (the
    exact mode's streamed block, elements; default the estimators')."""
    from ..finetune.build import load
    from ..finetune.commands import load_task, sample
    from ..finetune.loop import FIRST_ORDER, FinetuneConfig, build_optimizer
    from ..finetune.objectives import get_objective

    cuda = spec.get("device", "cpu").startswith("cuda")
    if not cuda and not Path("/proc/self/clear_refs").exists():
        raise RuntimeError("peak RSS needs Linux's /proc/self/clear_refs")
    task = load_task(spec["task"])
    train = sample(task, "kshot", spec["k"], spec["seed"], None).train[: spec["batch"]]
    built = load(spec["model"], task, spec["mode"], spec["tuning"], template=spec.get("template"), seed=spec["seed"],
                 dtype=dtype_of(spec.get("dtype", "float32")), blocks=spec.get("blocks"),
                 tuning_options=spec.get("tuning_options"))
    built.to(spec.get("device", "cpu"))
    model, scorer = built.model, built.scorer
    model.train(False)
    enc = scorer.encode(train).to(spec.get("device", "cpu"))
    objective = get_objective("ce")
    method = spec["method"]
    params = [p for p in model.parameters() if p.requires_grad]

    def closure():
        return objective(scorer(model, enc), enc.labels)

    opt = None
    if method != "inference":
        zo_mode = spec.get("perturbation") if method not in FIRST_ORDER else None
        options = {"perturbation": zo_mode} if zo_mode else {}
        if "exact_block" in spec and method not in FIRST_ORDER:
            options["exact_block"] = spec["exact_block"]
        cfg = FinetuneConfig(model=spec["model"], task=spec["task"], estimator=method, lr=1e-9, eps=1e-3,
                             seed=spec["seed"], tuning=spec["tuning"], estimator_options=options,
                             blocks=spec.get("blocks"), tuning_options=spec.get("tuning_options") or {})
        opt = build_optimizer(cfg, params, model)
    if not cuda:
        page_in(model)
    base = torch.cuda.memory_allocated() if cuda else rss_now_bytes()
    reset_peak(cuda)
    for _ in range(STEPS):
        if method == "inference":
            with torch.no_grad():
                closure()
        elif method in FIRST_ORDER:
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                closure().backward()
            opt.step()
        else:
            with torch.no_grad():
                opt.step(closure)
    if cuda:
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() if cuda else rss_peak_bytes()
    return {"method": method, "base_bytes": base, "peak_bytes": peak,
            "measure": "torch.cuda.max_memory_allocated" if cuda else "peak RSS (VmHWM)",
            "trainable_params": sum(p.numel() for p in params),
            "perturbation": getattr(getattr(opt, "perturbation", None), "name", None)}


def check_repeats(repeats) -> int:
    """`repeats` if it is an integer >= 1, else a ValueError."""
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    return repeats


def median_of_runs(probe, spec: dict, method: str, repeats: int) -> dict:
    """`probe(spec, [method])` in `repeats` fresh processes: the first row, with the median base and
    peak bytes and every run's peak in `peak_bytes_runs`.

    Peak RSS is noisy at the level that matters here: identical runs of one process spread by
    up to about 10 MiB on SmolLM2 and 100 MiB on a 1B config (the allocator), against ZO
    steps that should cost a few MiB over inference. One run is not a measurement.
    """
    runs = [probe(spec, [method])[0] for _ in range(check_repeats(repeats))]
    return {**runs[0], "base_bytes": statistics.median(r["base_bytes"] for r in runs),
            "peak_bytes": statistics.median(r["peak_bytes"] for r in runs),
            "peak_bytes_runs": [r["peak_bytes"] for r in runs]}


def run_fresh(module: str, spec: dict, what: str) -> dict:
    """Runs `python -m module SPEC_JSON` and returns the JSON on its last stdout line."""
    proc = subprocess.run([sys.executable, "-m", module, json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{what} failed: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(spec: dict, methods: list[str]) -> list[dict]:
    """Runs `probe` for each method in its own subprocess; rows in the order given.

    A fresh process knows only the estimators registered when `zoo` is imported; one registered
    at run time (in a script or a test) cannot be probed there and fails with its name.
    """
    return [run_fresh("zoo.bench.memory", {**spec, "method": m}, f"memory probe of {m}") for m in methods]


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]))))
