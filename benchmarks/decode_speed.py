"""Batched greedy decoding of SQuAD answers with the KV cache against recomputing the sequence (issue 30).

SmolLM2-135M-Instruct (the shipped weights), 16 test-pool questions (--questions) in batches of 8, 16 new
tokens each with no stop token (every row decodes all 16, so both sides do the same work), rounds
alternating the two ways side by side in one process; medians of the rounds.

    python benchmarks/decode_speed.py --out docs/decode_speed.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    from zoo.files import write_json
    from zoo.generation import load_squad, squad_prompt, squad_splits
    from zoo.generation.decode import greedy_decode
    from zoo.models import load_causal_lm
    from zoo.provenance import machine
    from zoo.tasks import data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/decode_speed.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--questions", type=int, default=16)
    args = ap.parse_args()
    model, tok = load_causal_lm("smollm2-135m")
    _, _, test = squad_splits(load_squad(data_dir() / "squad" / "dev-v1.1.json"), 0, 1, 1, args.questions)
    prompts = [tok(squad_prompt(q), add_special_tokens=False)["input_ids"] for q in test]
    batches = [prompts[i:i + 8] for i in range(0, len(prompts), 8)]
    times = {True: [], False: []}
    for _ in range(args.rounds):
        for cached in (True, False):
            t = time.perf_counter()
            for b in batches:
                out = greedy_decode(model, b, 16, frozenset(), tok.pad_token_id, use_cache=cached)
                assert all(len(o) == 16 for o in out)
            times[cached].append(time.perf_counter() - t)
    tokens = 16 * len(prompts)
    rows = {("cache" if c else "recompute"): {"seconds": statistics.median(v), "tokens_per_s": tokens / statistics.median(v),
                                             "rounds": v} for c, v in times.items()}
    ratio = statistics.median(r / c for c, r in zip(times[True], times[False]))
    command = f"python benchmarks/decode_speed.py --out {args.out} --rounds {args.rounds} --questions {args.questions}"
    write_json(args.out, {"command": command, "measured": {
        **machine(), "date": time.strftime("%Y-%m-%d")}, "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts),
        "new_tokens": 16, "batch": 8, "questions": len(prompts), **rows, "speedup_median_of_rounds": ratio}, indent=1)
    print(f"cache {rows['cache']['tokens_per_s']:.1f} tokens/s, recompute {rows['recompute']['tokens_per_s']:.1f}; "
          f"{ratio:.2f}x")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
