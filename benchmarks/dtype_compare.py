"""float32 against bfloat16 weights on this CPU: step time, whether a MeZO step still moves the weights, zero-shot accuracy.

    OMP_NUM_THREADS=1 python benchmarks/dtype_compare.py

Model: the real SmolLM2-135M-Instruct (`zoo.models`), SST-2 with the review template, one
k = 16 training batch of 16 (seed 0). For each tuning (full, LoRA) the dtypes alternate within
each round, with what `zoo finetune --dtype` runs: mezo-sgd with the estimators' default
perturbation (`exact` where the trained weights are bfloat16, else `inplace`: LoRA factors stay
float32), at the paper table's learning rates (full 3e-5 / eps 1e-3, LoRA 1e-3 / eps 1e-2).
Full tuning also runs bfloat16 with `inplace`, to price the exact mode, bfloat16 exact with every
module held aside whole (`exact_block=0`, no streamed row blocks), and bfloat16 exact with
the batch split into the evaluation's length-sorted chunks (each model call then costs a sweep
more; `zoo finetune` prices that in, `PromptScorer.for_exact_perturbation`). It also times one
sweep over all weights in tokens of forward, the basis of `scoring.EXACT_SWEEP_TOKENS`.

Each step is followed by two plain forwards of the same batch, so a step's overhead over its
forwards is measured in the same round. "moved" is the fraction of trained elements whose bits
changed in a step: a bfloat16 weight near 0.05 has a spacing of 2^-12 (about 2.4e-4), so an
update lr * g * z of about 3e-5 rounds back to the same number for most elements. Zero-shot
accuracy is over all 872 SST-2 dev sentences. Writes benchmarks/results/dtype_compare.json (docs/performance.md quotes it).
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

import record
from zoo import estimators, tasks
from zoo.finetune.build import load
from zoo.finetune.evaluate import evaluate
from zoo.finetune.objectives import get_objective
from zoo.finetune.scoring import length_chunks
from zoo.perturb import DirectionKey, apply_
from zoo.placement import dtype_of

ROUNDS = 4
SETTINGS = {"full": {"lr": 3e-5, "eps": 1e-3}, "lora": {"lr": 1e-3, "eps": 1e-2}}
DTYPES = ("float32", "bfloat16")
# name: (dtype, perturbation (None: the estimators' default), whether the step's scorer prices a call as
# `zoo finetune` does (`for_exact_perturbation` under exact) or keeps the evaluation's chunks, more options)
VARIANTS = {
    "full": {"float32": ("float32", None, True, {}), "bfloat16": ("bfloat16", None, True, {}),
             "bfloat16, evaluation's chunks": ("bfloat16", None, False, {}),
             "bfloat16, modules held whole": ("bfloat16", None, True, {"exact_block": 0}),
             "bfloat16 inplace": ("bfloat16", "inplace", True, {})},
    "lora": {"float32": ("float32", None, True, {}), "bfloat16": ("bfloat16", None, True, {})},
}


def _tokens(scorer, enc) -> int:
    """Padded tokens of one pass of `scorer` over `enc`: each chunk's rows x its longest row."""
    lengths = enc.attention_mask.sum(1).tolist()
    return sum(len(c) * max(lengths[i] for i in c) for c in length_chunks(lengths, scorer.call_cost_tokens))


def _sweep_seconds(opt) -> float:
    """Median of 3 sweeps over all of the optimizer's weights (z drawn and added at 1e-9)."""
    slots, key = opt.slots, DirectionKey(1, 0)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        apply_(opt.backend, opt.field, slots, [(key, {s.uid: 1e-9 for s in slots})], at_theta=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> dict:
    task = tasks.get_task("sst2")
    batch = tasks.few_shot(task, 16, 0).train[:16]
    ce = get_objective("ce")
    out = {"steps": {}, "zero_shot": {}, "sweep_in_tokens": {}}
    for tuning, hp in SETTINGS.items():
        runs = {}
        for name, (dtype, mode, priced, options) in VARIANTS[tuning].items():
            built = load("smollm2-135m", task, "prompt", tuning, template="review", dtype=dtype_of(dtype))
            params = [p for p in built.model.parameters() if p.requires_grad]
            opt = estimators.get("mezo-sgd", params, module=built.model, seed=0, perturbation=mode, **options, **hp)
            scorer = built.scorer
            if priced and opt.perturbation.name == "exact":
                scorer = scorer.for_exact_perturbation(
                    sum(p.numel() for p in params) / sum(p.numel() for p in built.model.parameters()))
            runs[name] = (built, scorer, params, opt, built.scorer.encode(batch))
        times = {name: [] for name in runs}
        forwards = {name: [] for name in runs}
        moved = {name: [] for name in runs}
        for _ in range(ROUNDS):
            for name, (built, scorer, params, opt, enc) in runs.items():
                def closure():
                    return ce(scorer(built.model, enc), enc.labels)

                before = [p.detach().clone() for p in params]
                with torch.no_grad():
                    t = time.perf_counter()
                    opt.step(closure)
                    times[name].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    closure(), closure()
                    forwards[name].append(time.perf_counter() - t)
                changed = sum(int((a != b).sum()) for a, b in zip(before, params))
                moved[name].append(changed / sum(p.numel() for p in params))
        out["steps"][tuning] = {
            name: {"median_step_s": statistics.median(times[name]), "step_s": times[name],
                   "median_two_forwards_s": statistics.median(forwards[name]), "two_forwards_s": forwards[name],
                   "moved_fraction_median": statistics.median(moved[name]), "moved_fraction": moved[name],
                   "trained_dtypes": sorted({str(p.dtype) for p in runs[name][2]}),
                   "perturbation": runs[name][3].perturbation.name,
                   "exact_saved_bytes": getattr(runs[name][3].perturbation, "peak_saved_bytes", None),
                   "call_cost_tokens": runs[name][1].call_cost_tokens,
                   "model_calls_per_forward": len(length_chunks(runs[name][4].attention_mask.sum(1).tolist(),
                                                                runs[name][1].call_cost_tokens)),
                   **hp}
            for name in runs}
        out["steps"][tuning]["time_ratio_float32_over_bfloat16"] = (
            out["steps"][tuning]["float32"]["median_step_s"] / out["steps"][tuning]["bfloat16"]["median_step_s"])
        if tuning == "full":  # the basis of scoring.EXACT_SWEEP_TOKENS: a sweep in tokens of forward
            for name in DTYPES:
                built, scorer, _, opt, enc = runs[name]
                sweep = _sweep_seconds(opt)
                per_token = out["steps"][tuning][name]["median_two_forwards_s"] / (2 * _tokens(scorer, enc))
                out["sweep_in_tokens"][name] = {"sweep_s": sweep, "forward_s_per_token": per_token,
                                                "tokens": sweep / per_token}
        del runs
    dev = task.examples(task.eval_split)
    for name in DTYPES:
        built = load("smollm2-135m", task, "prompt", "full", template="review", dtype=dtype_of(name))
        t = time.perf_counter()
        m = evaluate(built.model, built.scorer, dev)
        out["zero_shot"][name] = {"accuracy": m["accuracy"], "loss": m["loss"], "examples": m["examples"],
                                  "seconds": time.perf_counter() - t}
    return record.save("dtype_compare", out, "OMP_NUM_THREADS=1 python benchmarks/dtype_compare.py")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
