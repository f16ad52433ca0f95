"""The LM head over the kept positions: an int `logits_to_keep` (a strided view) against an index tensor (a copy).

    OMP_NUM_THREADS=1 python benchmarks/head_slice_speed.py

Model: the real SmolLM2-135M-Instruct, one k = 16 training batch of 16 (seed 0) of SST-2 (review
template, one row per example) and of RTE (mezo template, one row per example and candidate),
padded whole. With an int, transformers slices the hidden states as a strided view; where the
tied embedding matrix needs no grad (LoRA, prefix), torch's matmul runs that as a batched product
over a copy of the whole vocabulary matrix per row. An index tensor copies the few kept positions
into a contiguous block first, and the head is one matrix product. The two calls alternate in
each round; figures are medians. Writes benchmarks/results/head_slice_speed.json.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

import record
from zoo import tasks
from zoo.finetune.build import load
from zoo.finetune.scoring import _position_ids
from zoo.placement import dtype_of

ROUNDS = 3
CASES = [("sst2", "review", "full", "float32"), ("sst2", "review", "lora", "float32"),
         ("sst2", "review", "prefix", "float32"), ("sst2", "review", "lora", "bfloat16"),
         ("rte", "mezo", "full", "float32"), ("rte", "mezo", "lora", "float32"), ("rte", "mezo", "prefix", "float32")]


def main() -> dict:
    rows = []
    for task_name, template, tuning, dtype in CASES:
        task = tasks.get_task(task_name)
        built = load("smollm2-135m", task, "prompt", tuning, template=template, dtype=dtype_of(dtype))
        enc = built.scorer.encode(tasks.few_shot(task, 16, 0).train[:16])
        length, width = enc.input_ids.shape[1], 2
        kwargs = dict(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                      position_ids=_position_ids(enc.attention_mask))
        keeps = {"int": width, "index": torch.arange(length - width, length)}
        times, logits = {k: [] for k in keeps}, {}
        for _ in range(ROUNDS):
            for name, keep in keeps.items():
                t = time.perf_counter()
                with torch.no_grad():
                    logits[name] = built.model(**kwargs, logits_to_keep=keep).logits
                times[name].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"task": task_name, "tuning": tuning, "dtype": dtype, "rows": enc.input_ids.shape[0],
                     "length": length, "median_s": med, "speedup": med["int"] / med["index"],
                     "identical_logits": bool(torch.equal(logits["int"], logits["index"])),
                     "max_abs_difference": float((logits["int"] - logits["index"]).abs().max())})
        print(rows[-1], file=sys.stderr)
    return record.save("head_slice_speed", {"rounds": ROUNDS, "rows": rows},
                       "OMP_NUM_THREADS=1 python benchmarks/head_slice_speed.py")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
