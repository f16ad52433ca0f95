"""Batched greedy decoding of SQuAD answers with the KV cache against recomputing the sequence (issue 30).

SmolLM2-135M-Instruct (the shipped weights), 8 test-pool questions (--questions) at each batch size
(--batch-sizes), 16 new tokens each (--new-tokens) with no stop token (every row decodes them all, so both
sides do the same work), rounds alternating the two ways side by side in one process; medians of the rounds.

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
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--new-tokens", type=int, default=16)
    args = ap.parse_args()
    model, tok = load_causal_lm("smollm2-135m")
    _, _, test = squad_splits(load_squad(data_dir() / "squad" / "dev-v1.1.json"), 0, 1, 1, args.questions)
    prompts = [tok(squad_prompt(q), add_special_tokens=False)["input_ids"] for q in test]
    new = args.new_tokens
    rows = []
    for size in args.batch_sizes:
        batches = [prompts[i:i + size] for i in range(0, len(prompts), size)]
        times = {True: [], False: []}
        for _ in range(args.rounds):
            for cached in (True, False):
                t = time.perf_counter()
                for b in batches:
                    out = greedy_decode(model, b, new, frozenset(), tok.pad_token_id, use_cache=cached)
                    assert all(len(o) == new for o in out)
                times[cached].append(time.perf_counter() - t)
        tokens = new * len(prompts)
        row = {"batch": size, "speedup_median_of_rounds": statistics.median(r / c for c, r in zip(times[True],
                                                                                                    times[False]))}
        for cached, v in times.items():
            row["cache" if cached else "recompute"] = {"seconds": statistics.median(v),
                                                        "tokens_per_s": tokens / statistics.median(v), "rounds": v}
        rows.append(row)
        print(f"batch {size}: cache {row['cache']['tokens_per_s']:.1f} tokens/s, recompute "
              f"{row['recompute']['tokens_per_s']:.1f}; {row['speedup_median_of_rounds']:.2f}x", flush=True)
    command = (f"python benchmarks/decode_speed.py --out {args.out} --rounds {args.rounds} --questions "
               f"{args.questions} --batch-sizes {' '.join(map(str, args.batch_sizes))} --new-tokens {new}")
    write_json(args.out, {"command": command, "measured": {**machine(), "date": time.strftime("%Y-%m-%d"),
                                                           "torch_threads": torch.get_num_threads()},
                          "prompt_tokens_mean": sum(map(len, prompts)) / len(prompts), "new_tokens": new,
                          "questions": len(prompts), "rows": rows}, indent=1)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
