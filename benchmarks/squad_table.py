"""MeZO's SQuAD rows at small scale: SmolLM2-135M-Instruct on SQuAD v1.1's pools, F1 and exact match.

The rows of MeZO's Table 1 (generation column) and Table 3 (the F1 objective): zero-shot, in-context
learning, MeZO (full) on the cross-entropy of the gold answer, MeZO (full) on minus the F1 of its own
greedy answers, first-order Adam, and MeZO with LoRA. Every run is the `zoo` command the report prints,
run through zoo's own CLI, with its results.json under benchmarks/results/squad/<row>/<seed>/:

    python benchmarks/squad_table.py run                  # the pending runs, in order; resumable
    python benchmarks/squad_table.py run --rows mezo-ce --seeds 0   # some rows and seeds only
    python benchmarks/squad_table.py report               # rewrites docs/results.md's SQuAD section

Two `run`s side by side (one per core) split the pending runs. Finished runs are skipped; an
interrupted finetune run resumes from its checkpoint. Sizes are what a CPU affords (a full-parameter
MeZO step on 4 questions of ~220 tokens costs seconds, not the paper's 1,000 examples and 20,000
steps), so the report shows each trained row's dev trend beside its test score.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "squad"
DOC = ROOT / "docs" / "results.md"
SECTION = "SQuAD (generation)"
MODEL = "smollm2-135m"
SEEDS = (0, 1, 2)
TEST = 200  # test-pool questions, the same ones for every row (drawn with seed 0)
TRAIN = {"k": 32, "batch_size": 4, "max_length": 512, "eval_every": 25, "checkpoint_every": 10}

# (row, label, kind, seeds, settings)
ROWS = [
    ("zero-shot", "Zero-shot", "eval", (None,), {}),
    ("icl", "ICL (1 demonstration)", "eval", SEEDS, {"icl": 1}),
    ("mezo-ce", "MeZO (full), CE", "finetune", SEEDS,
     {"estimator": "mezo-sgd", "tuning": "full", "objective": "ce", "lr": 3e-5, "eps": 1e-3, "steps": 100}),
    # eps 1e-2, not MeZO's 1e-3: in a 10-step check (seed 0, batches of 4, 2026-12-07) no step at eps 1e-3
    # changed a greedy answer, so every projected gradient was 0; at 1e-2 all 10 did
    ("mezo-f1", "MeZO (full), F1 objective", "finetune", SEEDS,
     {"estimator": "mezo-sgd", "tuning": "full", "objective": "f1", "lr": 3e-5, "eps": 1e-2, "steps": 100}),
    ("ft-adam", "First-order FT (Adam, full)", "finetune", SEEDS,
     {"estimator": "adam", "tuning": "full", "objective": "ce", "lr": 1e-5, "steps": 50}),
    ("mezo-lora-ce", "MeZO (LoRA), CE", "finetune", SEEDS,
     {"estimator": "mezo-sgd", "tuning": "lora", "objective": "ce", "lr": 1e-3, "eps": 1e-2, "steps": 100}),
]

# MeZO's Table 3 also optimises accuracy directly on classification. These runs share the `cpu` bench
# suite's MeZO-SGD settings (top 2 blocks through the activation cache, 200 steps = 400 forwards) but for
# the objective, so their cross-entropy rows are that suite's runs; the eps-1e-2 row asks whether a larger
# perturbation flips more of a batch's answers. (row, label, seeds, settings)
OBJECTIVE_ROWS = [
    ("sst2-accuracy", "SST-2", SEEDS, {"task": "sst2", "template": "review", "eps": 1e-3}),
    ("trec-accuracy", "TREC", SEEDS, {"task": "trec", "template": "words", "eps": 1e-3}),
    ("sst2-accuracy-eps1e-2", "SST-2, eps 1e-2", SEEDS, {"task": "sst2", "template": "review", "eps": 1e-2}),
    ("trec-accuracy-eps1e-2", "TREC, eps 1e-2", SEEDS, {"task": "trec", "template": "words", "eps": 1e-2}),
]
OBJECTIVE_RESULTS = ROOT / "benchmarks" / "results" / "objective"
CE_RUNS = ROOT / "benchmarks" / "results" / "cpu" / "runs" / "smollm2-135m-blocks2"
OBJECTIVE_TRAIN = {"tuning": "blocks", "blocks": 2, "estimator": "mezo-sgd", "lr": 3e-4, "steps": 200, "k": 16,
                   "batch_size": 16, "eval_every": 40, "test_limit": 200, "checkpoint_every": 50}
# RoBERTa-large, k = 512 (MeZO's Table 3): (cross-entropy, accuracy objective)
OBJECTIVE_PAPER = {"sst2": (93.3, 92.7), "trec": (94.3, 68.6)}

# The paper's rows (OPT-13B, 1,000 examples; Table 1, and Table 3 for the F1 objective with prefix tuning)
PAPER = {"zero-shot": 46.2, "icl": 75.9, "mezo-ce": 84.7, "mezo-f1": 78.5, "ft-adam": 84.9}


def folder(row: str, seed) -> Path:
    base = OBJECTIVE_RESULTS if row in {r for r, *_ in OBJECTIVE_ROWS} else RESULTS
    return base / row / ("all" if seed is None else f"seed{seed}")


def _flags(settings: dict) -> list[str]:
    return [f"--{key.replace('_', '-')} {value!r}" if isinstance(value, float) else f"--{key.replace('_', '-')} {value}"
            for key, value in settings.items()]


def command(row: str, seed, kind: str, settings: dict, out: str | None = None) -> str:
    """The `zoo` command line of one run; `seed` may be a shell variable such as "$S"."""
    name = row + ("" if seed is None else f"-seed{seed}")
    if kind == "objective":
        return " ".join(["zoo finetune", f"--model {MODEL}", *_flags({**settings, **OBJECTIVE_TRAIN}),
                         f"--seed {seed} --objective accuracy --out {out or f'runs/objective/{name}'}"])
    flags = [f"--model {MODEL} --task squad"]
    if kind == "eval":
        flags.append(f"--limit {TEST}")
        if settings.get("icl"):
            flags.append(f"--icl {settings['icl']}")
        if seed is not None:
            flags.append(f"--seed {seed}")
        return " ".join(["zoo eval", *flags, f"--json {out or f'squad-{name}.json'}"])
    flags += _flags({**settings, **TRAIN})
    flags += [f"--seed {seed}", f"--test-limit {TEST}", f"--out {out or f'runs/squad/{name}'}"]
    return " ".join(["zoo finetune", *flags])


def planned():
    """(row, seed, kind, settings): the accuracy-objective runs (minutes each), seed 0 of every SQuAD row,
    then seeds 1 and 2."""
    first = [(row, seeds[0], kind, st) for row, _, kind, seeds, st in ROWS]
    rest = [(row, seed, kind, st) for seed in SEEDS[1:] for row, _, kind, seeds, st in ROWS if seed in seeds]
    objective = [(row, seed, "objective", st) for row, _, seeds, st in OBJECTIVE_ROWS for seed in seeds]
    return objective + first + rest


def run_one(row, seed, kind, settings):
    from zoo.cli import main
    from zoo.finetune.lock import claimed

    out = folder(row, seed)
    if (out / "results.json").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    with claimed(out) as mine:
        if mine:
            target = str(out / "results.json") if kind == "eval" else str(out)
            cmd = command(row, seed, kind, settings, out=target)
            print(f"== {cmd}", flush=True)
            if main(shlex.split(cmd)[1:] + ["--quiet"]) != 0:
                raise SystemExit(f"{row} seed {seed}: the command failed")


def _finished(row: str, seeds) -> dict:
    """{seed: results} of the runs of `row` that finished."""
    return {s: json.loads(f.read_text()) for s in seeds if (f := folder(row, s) / "results.json").exists()}


def _mean_std(values: list[float], scale: float = 100, digits: int = 1) -> str:
    """`mean ± std` of `values` x `scale` (F1 and EM x100; accuracies as they are, 3 digits)."""
    if not values:
        return "not run yet"
    mean = f"{scale * statistics.mean(values):.{digits}f}"
    return mean + (f" ± {scale * statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


# (row, kind, against, claim): kind "beats" claims row ahead of against in test F1, "matches" that neither
# is ahead; with the paper's numbers (OPT-13B; Table 3 for the objectives, which it compares with prefix tuning)
CLAIMS = [
    ("icl", "beats", "zero-shot", "in-context demonstrations beat zero-shot (Table 1: 75.9 against 46.2)"),
    ("mezo-ce", "beats", "zero-shot", "MeZO (full) on the cross-entropy beats zero-shot (Table 1: 84.7 against 46.2)"),
    ("mezo-f1", "beats", "zero-shot", "MeZO trained on the non-differentiable F1 itself beats zero-shot (Table 3: "
                                      "78.5, prefix)"),
    ("mezo-ce", "beats", "mezo-f1", "the cross-entropy beats the F1 objective (Table 3, prefix: 84.2 against 78.5)"),
    ("mezo-ce", "matches", "ft-adam", "MeZO (full) matches first-order FT (Table 1: 84.7 against 84.9)"),
    ("mezo-ce", "beats", "mezo-lora-ce", "full-parameter MeZO beats MeZO-LoRA (Table 1 has no LoRA SQuAD row; its "
                                         "prefix row is 84.2 against 84.7)"),
]


def _by_seed(row: str) -> dict:
    """{seed: results} of a row's finished runs; a seedless row (zero-shot: greedy, the same test
    questions) stands for every seed."""
    done = _finished(row, next(seeds for r, _, _, seeds, _ in ROWS if r == row))
    return {s: done[None] for s in SEEDS} if None in done else done


def _budget(result: dict) -> str:
    """What a run spent: its forward and backward passes, or "no training"."""
    forwards, backwards = result.get("forward_passes"), result.get("backward_passes")
    if not forwards:
        return "no training"
    return f"{forwards} forwards" + (f" and {backwards} backwards" if backwards else "")


def claims() -> list[str]:
    """Each claim's verdict on test F1, paired by seed, beyond 2 standard errors or not resolved."""
    from zoo.bench.claims import paired_verdict

    out = []
    for row, kind, against, claim in CLAIMS:
        a, b = _by_seed(row), _by_seed(against)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        diffs = [100 * (a[s]["metrics"]["f1"] - b[s]["metrics"]["f1"]) for s in seeds]
        mean, se, verdict = paired_verdict(diffs)
        if kind == "matches":  # a tie is the claim: either row ahead contradicts it
            verdict = {"reproduced": f"not reproduced: {row} ahead",
                       "not reproduced: the other way round": f"not reproduced: {against} ahead",
                       "not resolved: within 2 standard errors": "consistent: no difference beyond 2 standard errors",
                       }.get(verdict, verdict)
        spread = f" ± {se:.1f} (SE)" if se is not None else ""
        cost = "; ".join(f"{r}: {_budget(x[seeds[0]])}" for r, x in ((row, a), (against, b)))
        out.append(f"- Claim: {claim}. F1 {row} − {against}, paired by seed ({', '.join(map(str, seeds))}): "
                   f"{', '.join(f'{d:+.1f}' for d in diffs)}; mean {mean:+.1f}{spread}: **{verdict}** ({cost}).")
    return ["", "The paper's claims on these rows (test F1 x100; a claim holds only beyond 2 standard errors of the",
            "paired differences):", "", *out] if out else []


def _training(result: dict, window: int = 25) -> str:
    """The training loss's mean over the first and the last `window` steps, and how many steps' two
    perturbed losses differed (under the F1 objective, a step whose perturbations changed no greedy
    answer has a projected gradient of 0 and does not move)."""
    history = result["history"]
    loss, pairs = history["loss"], history.get("step_losses") or []
    moved = f"; {sum(a != b for a, b in pairs)} of {len(pairs)} steps moved" if pairs else ""
    return (f"training loss, mean of the first {window} steps {statistics.mean(loss[:window]):.3f}, "
            f"of the last {window} {statistics.mean(loss[-window:]):.3f}{moved}")


def _trend(result: dict) -> str:
    evals = result.get("history", {}).get("evals", [])
    return ", ".join(f"{100 * e['dev_f1']:.1f} (step {e['step']})" for e in evals)


def section() -> str:
    """The SQuAD section of docs/results.md, from the finished runs."""
    lines = [f"## {SECTION}", "",
             "SmolLM2-135M-Instruct on the SQuAD v1.1 pools of `zoo/generation/squad.py` (train and dev questions from",
             "two thirds of the dev file's articles, test questions from the other third, drawn with seed 0: the",
             f"same {TEST} for every row), MeZO's prompt, greedy answers with the KV cache up to 16 tokens, SQuAD's",
             "official normalisation; F1 and exact match x100, mean ± std over the seeds that finished (`n`). Trained",
             f"rows: k = {TRAIN['k']} train and {TRAIN['k']} dev questions per seed, batches of {TRAIN['batch_size']}, "
             f"prompts up to {TRAIN['max_length']} tokens.",
             "Generated by `python benchmarks/squad_table.py report`; each run's results.json is under",
             "`benchmarks/results/squad/`.", "",
             "| row | F1 | EM | n | paper (OPT-13B) F1 | forward passes | s / step | wall time / run | settings |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    trends, measured = [], set()
    for row, label, kind, seeds, settings in ROWS:
        by_seed = _finished(row, seeds)
        done = list(by_seed.values())
        measured |= {(m["date"], m["machine"], m["threads"], m["torch"]) for r in done if (m := r.get("measured"))}
        f1 = [r["metrics"]["f1"] for r in done]
        em = [r["metrics"]["exact_match"] for r in done]
        fps = [r["forward_passes"] for r in done if r.get("forward_passes")]
        walls = [r["wall_time_s"] for r in done if "wall_time_s" in r]
        step_s = [r["median_step_s"] for r in done if r.get("median_step_s")]
        cells = [label, _mean_std(f1), _mean_std(em) if done else "", str(len(done)), str(PAPER.get(row, "—")),
                 f"{statistics.mean(fps):.0f}" if fps else "—", f"{statistics.mean(step_s):.1f}" if step_s else "—",
                 f"{statistics.mean(walls):.0f} s" if walls else "",
                 ", ".join(f"{k}={v}" for k, v in settings.items())]
        lines.append("| " + " | ".join(cells) + " |")
        for seed, r in by_seed.items():
            if kind == "finetune" and (trend := _trend(r)):
                trends.append(f"- {label}, seed {seed}: dev {trend}; {_training(r)}")
    if measured:
        lines += ["", "Measured " + "; ".join(f"{d}, {mach} CPU (2 cores), torch {t}, {n} thread(s) a run"
                                           for d, mach, n, t in sorted(measured))
                  + ", two runs at a time (`OMP_NUM_THREADS=1 python benchmarks/squad_table.py run`"
                  " in two shells), so a run's times carry the other's load. *s / step* is the run's median step; "
                  "*wall time* includes its dev evaluations and the test questions."]
    first = [(label, json.loads(f.read_text())["metrics"]) for label, f in (
        ("zero-shot", RESULTS / "zero-shot.json"), ("ICL with 1 demonstration", RESULTS / "icl1.json")) if f.exists()]
    if first:
        lines += ["", "A first look on 100 test-pool questions (`--limit 100`: a draw of its own, not a part of the "
                  "200 above; 2026-12-07, one seed): " + "; ".join(
            f"{label} F1 {100 * m['f1']:.1f}, EM {100 * m['exact_match']:.1f}" for label, m in first)
            + " (benchmarks/results/squad/zero-shot.json, icl1.json)."]
    lines += ["", "The paper's rows are OPT-13B on 1,000 examples (Table 1; the F1 objective is its Table 3 row, with",
              "prefix tuning), 20,000 MeZO steps: for scale, not a target for a 135M model trained for minutes. The",
              "trained rows here are short (100 MeZO steps, 0.5% of the paper's; 50 Adam steps), so each run's dev",
              "trend is listed below its claims."]
    lines += claims()
    if trends:
        lines += ["", "Dev trend of each trained run (dev F1 x100 at each evaluation, the first before any step), and its",
                  "training loss (the cross-entropy of the gold answer, or −F1 under the F1 objective):", "",
                  *trends]
    lines += _pending()
    lines += objective_lines()
    lines += ["", "Commands, seed by seed (from the repository root):", "", "```bash"]
    for row, _, kind, seeds, settings in ROWS:
        if seeds == (None,):
            lines.append(command(row, None, kind, settings))
        else:
            lines.append(f"for S in {' '.join(map(str, seeds))}; do {command(row, '$S', kind, settings)}; done")
    for row, _, seeds, settings in OBJECTIVE_ROWS:
        lines.append(f"for S in {' '.join(map(str, seeds))}; do {command(row, '$S', 'objective', settings)}; done")
    return "\n".join(lines + ["```", ""])


def _pending() -> list[str]:
    """Where the trained rows stand: each started run's step, dev F1 and median step time, then the cost."""
    started, missing = [], []
    for row, label, kind, seeds, settings in ROWS:
        for seed in seeds:
            out = folder(row, seed)
            if kind != "finetune" or (out / "results.json").exists():
                continue
            log = out / "trajectory.json"
            if not log.exists():
                running = " (running)" if (out / ".running").exists() else ""
                missing.append(f"{row} seed {seed}{running}")
                continue
            traj = json.loads(log.read_text())
            step_s = traj["history"].get("step_seconds") or [float("nan")]
            started.append(f"- {label}, seed {seed}: unfinished at step {traj['step']} of {settings['steps']}; dev F1 "
                           f"{_trend(traj) or '—'}; median step {statistics.median(step_s):.1f} s (the machine's load "
                           "at the time included). `run` resumes it from its checkpoint, or rebuilds it from this log.")
    if not started and not missing:
        return []
    lines = ["", "Not finished yet:", "", *started]
    if missing:
        lines.append(f"- no checkpoint yet: {', '.join(missing)}.")
    return lines + ["", "A SQuAD row is about 221 tokens, 15 times an SST-2 row: a full-parameter MeZO step on 8 questions",
                    "measured 54-64 s under the CE objective and 56-78 s under the F1 objective on this machine while",
                    "other work ran (docs/performance.md, *SQuAD: decoding and the cost of a step*); the rows above",
                    "take batches of 4, 100 MeZO steps (50 for Adam) and 200 test questions so that all of them fit",
                    "in a few hours of both cores, and report the dev trend beside the test score."]


def _ce_run(task: str, seed: int) -> dict | None:
    f = CE_RUNS / task / "mezo-sgd" / f"lr{OBJECTIVE_TRAIN['lr']}-eps0.001" / f"seed{seed}" / "results.json"
    return json.loads(f.read_text()) if f.exists() else None


def _same_but_objective(a: dict, b: dict) -> bool:
    """Whether two runs' configs agree on everything but the objective and the perturbation scale."""
    skip = {"objective", "eps"}
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def objective_lines() -> list[str]:
    """The accuracy-objective table: each row beside the cross-entropy runs it shares its settings with."""
    lines = ["", "### Optimising accuracy directly (MeZO's Table 3, classification)", "",
             "MeZO (MeZO-SGD, lr 3e-4) on the loss 1 − accuracy of the batch, against the same runs on the",
             "cross-entropy: SmolLM2's top 2 blocks through the activation cache, k = 16, batches of 16, 200 steps",
             "(400 forwards), 200 test examples, seeds 0-2. The cross-entropy runs are the `cpu` bench suite's",
             "MeZO-SGD runs (docs/benchmarks.md), whose configs equal these but for the objective (checked by",
             "this report). A batch's accuracy moves in steps of 1/16, so a perturbation too small to flip an",
             "answer gives a projected gradient of 0 and no update: `moved` counts the steps whose two perturbed",
             "accuracies differed.", "",
             "| task | cross-entropy (eps 1e-3) | accuracy objective | eps | moved (of 200 steps) | n | paper, RoBERTa-large k=512: CE / accuracy |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row, label, seeds, settings in OBJECTIVE_ROWS:
        runs = {s: json.loads(f.read_text()) for s in seeds if (f := folder(row, s) / "results.json").exists()}
        ce = {s: r for s in runs if (r := _ce_run(settings["task"], s))}
        mismatched = [s for s in ce if not _same_but_objective(ce[s]["config"], runs[s]["config"])]
        moved = [sum(a != b for a, b in r["history"]["step_losses"]) for r in runs.values()]
        paper = OBJECTIVE_PAPER.get(settings["task"])

        def acc(rs):
            return _mean_std([r["metrics"]["accuracy"] for r in rs], scale=1, digits=3)

        lines.append(f"| {label} | {acc(ce.values())} | {acc(runs.values())} | {settings['eps']:g} | "
                     f"{', '.join(map(str, moved)) or '—'} | {len(runs)} | "
                     f"{f'{paper[0]} / {paper[1]}' if paper else '—'} |")
        if mismatched:
            lines.append(f"| (seeds {mismatched}: the cross-entropy run's config differs beyond the objective) |"
                         " | | | | | |")
    return lines


def report(path: Path = DOC) -> None:
    """Replaces the SQuAD section of `path` (or appends it), keeping every other section as it is."""
    from zoo.files import write_text

    text = path.read_text() if path.exists() else ""
    before, found, after = text.partition(f"## {SECTION}")
    if found:  # the old section runs to the next heading of its level
        after = after[after.index("\n## ") + 1:] if "\n## " in after else ""
    parts = [before.rstrip("\n"), section().rstrip("\n"), after.rstrip("\n")]
    write_text(path, "\n\n".join(p for p in parts if p) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--rows", default=None, help="comma-separated rows to run (default: all)")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds to run (default: every row's)")
    args = ap.parse_args(argv)
    if args.action == "run":
        wanted = set(args.rows.split(",")) if args.rows else None
        unknown = (wanted or set()) - {r for r, *_ in ROWS} - {r for r, *_ in OBJECTIVE_ROWS}
        if unknown:
            raise SystemExit(f"--rows: unknown {', '.join(sorted(unknown))}; rows are {', '.join(r for r, *_ in ROWS)}")
        seeds = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
        for row, seed, kind, settings in planned():
            if (wanted is None or row in wanted) and (seeds is None or seed is None or seed in seeds):
                run_one(row, seed, kind, settings)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
