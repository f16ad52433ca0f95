"""The cost of a MeZO step on SQuAD under each objective and perturbation mode (issue 30).

SmolLM2-135M-Instruct (the shipped weights, float32, all weights trained), one batch of train-pool
questions (--batch), MeZO-SGD at lr 0 (the weights do not move, so every step costs the same). The "ce"
step runs two teacher-forced forwards; the "f1" step decodes the batch's greedy answers twice with the KV
cache (up to --max-new-tokens each, stopping at a newline). Under perturbation "exact" every model call
re-perturbs the weights, so an F1 step pays a sweep per decoded token. The settings alternate, one step
each per round, side by side in one process; medians of the rounds.

    python benchmarks/squad_step_cost.py --out docs/squad_step_cost.json
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
    import zoo
    from zoo.files import write_json
    from zoo.generation import load_squad, squad_splits
    from zoo.generation.training import SquadScorer
    from zoo.models import load_causal_lm
    from zoo.provenance import machine
    from zoo.tasks import data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/squad_step_cost.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()
    model, tok = load_causal_lm("smollm2-135m")
    train, _, _ = squad_splits(load_squad(data_dir() / "squad" / "dev-v1.1.json"), 0, args.batch, 1, 1)
    scorer = SquadScorer(tok, args.max_length, args.max_new_tokens)
    batch = scorer.encode(train)
    settings = [(objective, mode) for mode in ("inplace", "exact") for objective in ("ce", "f1")]
    optimizers = {mode: zoo.get("mezo-sgd", model, lr=0.0, eps=1e-3, seed=0, perturbation=mode)
                  for mode in ("inplace", "exact")}
    times = {s: [] for s in settings}
    for _ in range(args.rounds):
        for objective, mode in settings:
            t = time.perf_counter()
            optimizers[mode].step(lambda: scorer.batch_loss(model, batch, objective))
            times[(objective, mode)].append(time.perf_counter() - t)
            print(objective, mode, f"{times[(objective, mode)][-1]:.2f} s", flush=True)
    answers = scorer.answers(model, batch)
    rows = [{"objective": o, "perturbation": m, "step_s": statistics.median(times[(o, m)]), "rounds": times[(o, m)]}
            for o, m in settings]
    command = (f"python benchmarks/squad_step_cost.py --out {args.out} --rounds {args.rounds} --batch {args.batch} "
               f"--max-new-tokens {args.max_new_tokens} --max-length {args.max_length}")
    write_json(args.out, {"command": command, "measured": {**machine(), "date": time.strftime("%Y-%m-%d"),
                                                           "torch_threads": torch.get_num_threads()},
                          "prompt_tokens_mean": sum(map(len, batch.prompts)) / len(batch.prompts),
                          "answer_tokens_mean": sum(len(tok(a)["input_ids"]) for a in answers) / len(answers),
                          "rows": rows}, indent=1)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
