"""MeZO's Tables 1-2 rows at small scale: SmolLM2-135M on SST-2 and RTE, k=16, three seeds.

Rows: zero-shot (every template), in-context learning, linear probing,
first-order fine-tuning (Adam, backprop), MeZO (full), MeZO with LoRA, MeZO
with prefix tuning. Each run is a `zoo finetune` / `zoo eval` run with its
results.json under benchmarks/results/paper/<task>/<row>/<seed>/; finished
runs are skipped and an interrupted run resumes from its checkpoint, so

    python benchmarks/paper_table.py run          # works through the pending runs, resumable
    python benchmarks/paper_table.py report       # writes docs/results.md from what has finished
    python benchmarks/paper_table.py streams      # which noise stream older runs drew (see check_streams)

can be repeated across sessions until every row is filled. Commit each run's
results.json and curve.png, and the trajectory.json of an unfinished MeZO run:
a few KB that rebuild its weights on a fresh clone (checkpoint.pt, 540 MB for
the full model, stays out of git).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "paper"
SEEDS = (0, 1, 2)
K = 16
MODEL = "smollm2-135m"
TEMPLATE = {"sst2": "review", "rte": "mezo"}  # the best zero-shot template of each task (see the report)

# (row, label, kind, settings); steps are what fits this CPU, far fewer than MeZO's 20k-100k
ROWS = [
    ("icl", "ICL (1 demo per class)", "eval", {"icl": 1}),
    ("lp", "Linear probing", "eval", {"linear_probe": True}),
    ("ft-adam", "First-order FT (Adam, full)", "finetune",
     {"estimator": "adam", "tuning": "full", "lr": 1e-5, "steps": 100, "eps": 0.0}),
    ("mezo", "MeZO (full)", "finetune", {"estimator": "mezo-sgd", "tuning": "full", "lr": 3e-5, "eps": 1e-3, "steps": 500}),
    ("mezo-lora", "MeZO (LoRA)", "finetune", {"estimator": "mezo-sgd", "tuning": "lora", "lr": 1e-3, "eps": 1e-2, "steps": 500}),
    ("mezo-prefix", "MeZO (prefix)", "finetune",
     {"estimator": "mezo-sgd", "tuning": "prefix", "lr": 1e-2, "eps": 1e-1, "steps": 500}),
]

# Rows of one task beyond the table's: (task, row, label, seeds, settings). They run after seed 0 of
# every task's rows and before seeds 1 and 2, because each answers an open question (here, whether
# more MeZO steps reach the SST-2 target) a full seed's worth of RTE rows sooner; they resume across
# sessions from their committed trajectory.json.
EXTRA_ROWS = [
    # The LoRA row's first learning rate, kept because it is what MeZO's LoRA grid suggests and it
    # diverged on two seeds of three; the table's LoRA row runs at 1e-3.
    ("sst2", "mezo-lora-lr3e-3", "MeZO (LoRA), lr 3e-3: superseded", SEEDS,
     {"estimator": "mezo-sgd", "tuning": "lora", "lr": 3e-3, "eps": 1e-2, "steps": 500}),
    # The prefix row's dev loss was still falling at step 500 on every seed (0.470 -> 0.365,
    # 0.461 -> 0.267, 0.435 -> 0.275) and its mean is 0.045 over zero-shot against the 0.05 target:
    # the same settings, twice as long (seeds 1 and 2 repeat the 500-step runs' first 500 steps; seed 0's
    # 500-step run drew the torch-generator stream). Its steps are a fifth of a full-parameter step's cost.
    ("sst2", "mezo-prefix-1k", "MeZO (prefix), 1,000 steps", SEEDS,
     {"estimator": "mezo-sgd", "tuning": "prefix", "lr": 1e-2, "eps": 1e-1, "steps": 1000}),
    # What the table's 500 MeZO steps leave open: the same full-parameter run, 8x longer, one seed.
    ("sst2", "mezo-4k", "MeZO (full), 4,000 steps", (0,),
     {"estimator": "mezo-sgd", "tuning": "full", "lr": 3e-5, "eps": 1e-3, "steps": 4000}),
    # The parameter-efficient ZO systems of issue 31, each at the forward budget of the LoRA row (1,000).
    # adazeta draws 1 direction a step until step 189 and 2 after it, so 344 steps spend 998 forwards: the
    # comparison AdaZeta's paper makes against MeZO-LoRA, at equal forwards. Learning rates were not tuned
    # (no budget for a grid); each is set by analogy with a row above (see docs/results.md).
    ("sst2", "adazeta-tt", "AdaZeta (TT adapters), 344 steps", SEEDS,
     {"estimator": "adazeta", "tuning": "tt-adapter", "lr": 1e-3, "eps": 1e-2, "steps": 344}),
    ("sst2", "mezo-prompt", "MeZO (prompt tuning)", SEEDS,
     {"estimator": "mezo-sgd", "tuning": "prompt", "lr": 1e-2, "eps": 1e-2, "steps": 500}),
    # density 0.00434028 puts exactly LoRA's 460,800 trainable entries on SmolLM2's block Linears
    # (1,440 per 576x576 matrix): SpIEL against LoRA at equal trainable parameters.
    ("sst2", "mezo-sparse-delta", "MeZO (sparse deltas, SpIEL)", SEEDS,
     {"estimator": "mezo-sgd", "tuning": "sparse-delta", "tuning_options": {"density": 0.00434028},
      "lr": 5e-3, "eps": 1e-3, "steps": 500}),
]

# Extra rows stopped on purpose before their last step, with why. `run` leaves them where they are
# (their trajectory.json still resumes them if this entry goes), and the report says "stopped".
STOPPED = {
    ("sst2", "mezo-4k"): "stopped on purpose: its dev loss has risen since step 400 while its training loss fell "
                         "to about 0.02, so more steps overfit the 32 training sentences rather than test whether "
                         "longer MeZO reaches the target; its core went to the benchmark suite. Its weights at the "
                         "stop were not evaluated on the test set.",
}


def planned():
    """(task, row, seed, kind, settings) in the order they run: zero-shot under every template, seed 0
    of every task's rows, the extra rows, then seeds 1 and 2 of the rows."""
    from zoo.tasks import TEMPLATES

    tasks = ("sst2", "rte")
    out = [(task, f"zero-shot-{template}", None, "eval", {"template": template})
           for task in tasks for template in TEMPLATES[task]]

    def rows(seeds):
        return [(task, row, seed, kind, {"template": TEMPLATE[task], **settings})
                for seed in seeds for task in tasks for row, _, kind, settings in ROWS]

    out += rows(SEEDS[:1])
    for task, row, _, seeds, settings in EXTRA_ROWS:
        out += [(task, row, seed, "finetune", {"template": TEMPLATE[task], **settings}) for seed in seeds]
    return out + rows(SEEDS[1:])


def folder(task, row, seed) -> Path:
    return RESULTS / task / row / ("all" if seed is None else f"seed{seed}")


def run_one(task, row, seed, kind, settings):
    from zoo.finetune.lock import claimed

    out = folder(task, row, seed)
    if (out / "results.json").exists():
        return
    with claimed(out) as mine:  # two `run`s side by side (one per core) split the pending runs
        if mine:
            print(f"== {task} {row} seed {seed}", flush=True)
            _run_claimed(out, task, seed, kind, settings)


def _run_claimed(out, task, seed, kind, settings):
    from zoo.finetune.commands import run_eval, run_finetune

    if kind == "eval":
        r = run_eval(MODEL, task, **eval_options(seed, settings))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(r, indent=1))
        return
    run_finetune(finetune_config(task, seed, settings), str(out), {})


def eval_options(seed, settings) -> dict:
    """run_eval's options (after model and task) for a zero-shot, ICL or linear-probing run."""
    return {"template": settings["template"], "icl": settings.get("icl", 0),
            "linear_probe": settings.get("linear_probe", False), "k": K, "seed": seed or 0}


def finetune_config(task, seed, settings):
    from zoo.finetune.loop import FinetuneConfig

    return FinetuneConfig(model=MODEL, task=task, k=K, seed=seed, batch_size=16,
                          eval_every=max(settings["steps"] // 10, 1), checkpoint_every=25, **settings)


def command(task, row, seed, kind, settings) -> str:
    """The `zoo finetune` / `zoo eval` command line that runs what this script runs for one row and seed.

    `seed` may be a shell variable such as "$S"; tests/test_paper_table.py parses every command with
    zoo's own CLI and checks it gives the config this script runs.
    """
    flags = [f"--model {MODEL} --task {task}"]
    # tuning options have flags of their own (`every` is --regrow-every)
    flat = {k: v for k, v in settings.items() if k != "tuning_options"}
    flat |= {("regrow_every" if k == "every" else k): v for k, v in settings.get("tuning_options", {}).items()}
    for key, value in flat.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            flags.append(flag)
        elif value is not False:
            flags.append(f"{flag} {value!r}" if isinstance(value, float) else f"{flag} {value}")
    flags.append(f"--k {K}")
    name = f"{task}-{row}" + ("" if seed is None else f"-seed{seed}")
    if kind == "eval":
        if seed is not None:
            flags.append(f"--seed {seed}")
        return " ".join(["zoo eval", *flags, f"--json {name}.json"])
    cfg = finetune_config(task, 0, settings)
    flags += [f"--seed {seed}", f"--batch-size {cfg.batch_size}", f"--eval-every {cfg.eval_every}",
              f"--checkpoint-every {cfg.checkpoint_every}", f"--out runs/paper/{name}"]
    return " ".join(["zoo finetune", *flags])


def _commands(task: str) -> list[str]:
    lines = ["Commands: each row above, seed by seed, as the `zoo` command that runs it (from the repository root; "
             "`paper_table.py run` runs the same configs through the same functions and writes to "
             "`benchmarks/results/paper/` instead):", "", "```bash"]
    for t, row, seed, kind, settings in planned():
        if t == task and seed in (None, 0):
            cmd = command(task, row, None if seed is None else "$S", kind, settings)
            lines.append(cmd if seed is None else f"for S in {' '.join(map(str, _seeds(task, row)))}; do {cmd}; done")
    return lines + ["```", ""]


def _seeds(task: str, row: str):
    return next((seeds for t, r, _, seeds, _ in EXTRA_ROWS if (t, r) == (task, row)), SEEDS)


def report(path: Path):
    from zoo.finetune.loop import FIRST_ORDER

    lines = ["# Results: MeZO's comparison rows at small scale", "",
             "SmolLM2-135M-Instruct (prompt-based: candidates scored by log-likelihood), k = 16 examples per class,",
             "seeds 0, 1, 2 (the k-shot sample and the estimator's seed). Test sets: SST-2's 872 GLUE dev sentences,",
             "RTE's 277 SuperGLUE validation pairs (the labelled held-out splits that LM-BFF and MeZO report on).",
             "Accuracy is mean ± std over the seeds that have finished; `n` says how many.", "",
             f"Generated by `python benchmarks/paper_table.py report` on {date.today()}; runs by "
             "`python benchmarks/paper_table.py run` on this machine "
             f"({platform.machine()} CPU, 2 cores, torch CPU). Each run's results.json and curve.png are under "
             "`benchmarks/results/paper/`.", "",
             "LoRA and prefix runs that finished before 2026-11-30 ran the LM head over a strided view of the",
             "hidden states, which torch multiplies as a batched product; later runs copy the kept positions first",
             "(zoo/finetune/scoring.py). The scores agree to about 1e-5, and SST-2 forwards are about 1.2x faster",
             "(docs/performance.md, *The LM head over the kept positions*);",
             "full-parameter runs compute the same bits either way.", ""]
    for task in ("sst2", "rte"):
        lines += [f"## {task.upper()}", "",
                  "| row | template | accuracy | n | forward passes | trainable params | wall time / run | settings |",
                  "|---|---|---|---|---|---:|---|---|"]
        for t, row, seed, kind, settings in planned():
            if t != task or (seed not in (None, 0)):
                continue
            done = _finished(task, row).values()
            accs = [r["metrics"]["accuracy"] for r in done]
            fps = [r.get("forward_passes", 0) for r in done]
            walls = [r["wall_time_s"] for r in done]
            trainable = {r["trainable_params"] for r in done if r.get("trainable_params")}
            labels = {rr: lab for rr, lab, _, _ in ROWS} | {rr: lab for _, rr, lab, _, _ in EXTRA_ROWS}
            label = labels.get(row, row.replace("-", " "))
            running = [f"seed {s} at step {json.loads(log.read_text())['step']} of {settings['steps']}"
                       for s in ([] if seed is None else SEEDS)
                       if (log := folder(task, row, s) / "trajectory.json").exists()
                       and not (folder(task, row, s) / "results.json").exists()]
            if accs:
                acc = f"{statistics.mean(accs):.3f}" + (f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else "")
                cost = f"{statistics.mean(fps):.0f}" if any(fps) else "—"
                wall = f"{statistics.mean(walls):.0f} s"
            else:
                acc, cost, wall = "not run yet", "", ""
            if running:
                state = "stopped" if (task, row) in STOPPED else "unfinished"
                acc = ((f"{state}: " if not accs else f"{acc} ({state}: ") + ", ".join(running)
                       + (")" if accs else ""))
            first_order = settings.get("estimator") in FIRST_ORDER
            shown = {k: v for k, v in settings.items() if k not in ("template", "tuning_options")
                     and not (first_order and k == "eps")} | settings.get("tuning_options", {})
            params = ", ".join(f"{n:,}" for n in sorted(trainable)) or "—"
            lines.append(f"| {label} | {settings['template']} | {acc} | {len(accs)} | {cost} | {params} | {wall} | "
                         f"{', '.join(f'{k}={v}' for k, v in shown.items())} |")
        lines.append("")
        lines += _running_evals(task)
        lines += _stream_lines(task)
        lines += _targets(task)
        lines += _claims(task)
        lines += _commands(task)
    from zoo.files import write_text

    write_text(path, "\n".join(lines) + "\n" + _kept_sections(path))


GENERATED = ("SST2", "RTE")


def _kept_sections(path: Path) -> str:
    """The sections of an existing report that this script does not generate (written by hand from other
    experiments), so that regenerating the tables keeps them, in their order."""
    if not path.exists():
        return ""
    sections = path.read_text().split("\n## ")[1:]
    kept = [s for s in sections if s.split("\n", 1)[0].strip() not in GENERATED]
    return "".join(f"## {s.rstrip()}\n\n" for s in kept).removesuffix("\n")


def _running_evals(task: str) -> list[str]:
    """A line per unfinished run (running now or paused at its checkpoint) or stopped one, with its dev
    evaluations so far: where it is heading."""
    lines = []
    for t, row, seed, kind, settings in planned():
        log = folder(task, row, seed) / "trajectory.json" if seed is not None else None
        if t != task or log is None or not log.exists() or (log.parent / "results.json").exists():
            continue
        traj = json.loads(log.read_text())
        evals, losses = traj["history"]["evals"], traj["history"]["loss"]
        if len(evals) < 2:
            continue
        dev = ", ".join(f"{e['dev_accuracy']:.3f} / {e['dev_loss']:.3f} (step {e['step']})" for e in evals)
        recent = losses[-25:]
        why = STOPPED.get((task, row))
        line = (f"{'Stopped' if why else 'Unfinished'}, {row} seed {seed} (step {traj['step']} of "
                f"{settings['steps']}): dev accuracy / dev loss {dev}; training loss, mean of the last "
                f"{len(recent)} steps: {statistics.mean(recent):.3f}.")
        if why:
            line += f" {why[0].upper()}{why[1:]}"
            if step_s := traj["history"].get("step_seconds"):
                left = settings["steps"] - traj["step"]
                line += (f" Its {left} steps left would take about {left * statistics.median(step_s) / 3600:.1f} h "
                         f"of one core at its median step ({statistics.median(step_s):.1f} s).")
        lines.append(line)
    return lines + [""] if lines else []


def _finished(task: str, row: str, seeds=SEEDS) -> dict:
    """{seed: results.json} of a row's finished runs (zero-shot rows have the one seed None)."""
    out = {}
    for seed in ([None] if row.startswith("zero-shot") else seeds):
        f = folder(task, row, seed) / "results.json"
        if f.exists():
            out[seed] = json.loads(f.read_text())
    return out


def _accuracies(task: str, row: str) -> list[float]:
    return [r["metrics"]["accuracy"] for r in _finished(task, row).values()]


def _targets(task: str) -> list[str]:
    """The issue's two targets, from the finished runs: MeZO >= best zero-shot + 5 points (same
    template), and MeZO within 3 points of first-order Adam."""
    zero = {r: _accuracies(task, r) for r in ("zero-shot-review", "zero-shot-mezo")}
    zero = {r: a[0] for r, a in zero.items() if a}
    fo = _accuracies(task, "ft-adam")
    if not zero or not fo:
        return []
    best_row = max(zero, key=zero.get)
    # the issue sets the zero-shot margin on SST-2 only; other tasks show it for reference
    zero_scope = "" if task == "sst2" else "; set on SST-2, shown for reference"
    lines = [f"Targets on {task.upper()}, from the means above (n seeds each). Best zero-shot: "
             f"{zero[best_row]:.3f} ({best_row.removeprefix('zero-shot-')} template, the template of every "
             f"trained row). First-order Adam: {statistics.mean(fo):.3f} (n={len(fo)}), "
             f"{statistics.mean(fo) - zero[best_row]:+.3f} over the best zero-shot with gradients.", "",
             f"| row | accuracy | n | over best zero-shot (target >= +0.050{zero_scope}) "
             "| behind Adam (target <= 0.030) |",
             "|---|---|---|---|---|"]
    rows = {rr: (lab, SEEDS) for rr, lab, _, _ in ROWS if rr.startswith("mezo")}
    rows |= {rr: (lab, seeds) for t, rr, lab, seeds, _ in EXTRA_ROWS if t == task and "superseded" not in lab}
    for row, (label, seeds) in rows.items():
        accs = _accuracies(task, row)
        if not accs:
            continue
        m = statistics.mean(accs)
        over, behind = m - zero[best_row], statistics.mean(fo) - m
        # a verdict on fewer seeds than the row plans can still turn
        pending = f", {len(accs)} of {len(seeds)} seeds" if len(accs) < len(seeds) else ""
        lines.append(f"| {label} | {m:.3f} | {len(accs)} | {over:+.3f} ({'met' if over >= 0.05 else 'not met'}{pending}) "
                     f"| {behind:.3f} ({'met' if behind <= 0.03 else 'not met'}{pending}) |")
    falls = []
    for seed, r in _finished(task, "mezo").items():
        evals = r["history"]["evals"]
        falls.append(f"seed {seed}: {evals[0]['dev_loss']:.3f} at step {evals[0]['step']} to "
                     f"{evals[-1]['dev_loss']:.3f} at step {evals[-1]['step']}")
    steps = next(st["steps"] for rr, _, _, st in ROWS if rr == "mezo")
    lines += _superseded(task)
    step_s = _median_step_seconds(task, "mezo")
    cost = (f" A full-parameter MeZO step took {step_s:.1f} s here (median over the finished runs' steps, one "
            f"core), so 10,000 steps take about {step_s * 10_000 / 3600:.0f} h per run." if step_s else "")
    if step_s and not _chunked(task, "mezo"):
        cost += (" Those runs padded each batch whole; batches now run as length-sorted chunks "
                 "(docs/design.md, *Batches of mixed length*), 1.30x faster forwards on SST-2 and 1.88x on RTE.")
    return lines + ["", f"MeZO here runs {steps} steps; the paper runs 20,000-100,000. The dev loss of the "
                    f"full-parameter runs ({'; '.join(falls)}) is the trend to read where a target is not met: "
                    "falling means the run is short, not finished." + cost, ""]


def _chunked(task: str, row: str) -> bool:
    """Whether any finished seed of a row ran its batches as length-sorted chunks."""
    return any(r.get("call_cost_tokens") for r in _finished(task, row).values())


def _median_step_seconds(task: str, row: str) -> float | None:
    """The median training step over every finished seed of a row (None before steps were timed)."""
    steps = [s for r in _finished(task, row).values() for s in r["history"].get("step_seconds", [])]
    return statistics.median(steps) if steps else None


# Published claims that the rows above test (issue 31), each as (task, row, against, claim): the row's
# accuracy minus the other's, paired by seed (both share the seed's k-shot sample).
CLAIMS = [
    ("sst2", "adazeta-tt", "mezo-lora",
     "AdaZeta (TT adapters, growing queries) beats MeZO-LoRA at equal forwards (arXiv 2406.18060)"),
    ("sst2", "mezo-sparse-delta", "mezo-lora",
     "sparse deltas (SpIEL, arXiv 2401.16405) against LoRA at equal trainable parameters, both trained by MeZO"),
]


def _claims(task: str) -> list[str]:
    """Each claim's verdict from the seeds both rows finished: the mean paired difference against twice its
    standard error (the benchmark's rule), so that 3 seeds can also leave a claim unresolved."""
    from zoo.bench.claims import paired_verdict

    out = []
    for t, row, against, claim in CLAIMS:
        if t != task:
            continue
        a, b = _finished(task, row), _finished(task, against)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        diffs = [a[s]["metrics"]["accuracy"] - b[s]["metrics"]["accuracy"] for s in seeds]
        mean, se, verdict = paired_verdict(diffs)
        spread = f" ± {se:.3f} (SE)" if se is not None else ""
        cost = "; ".join(f"{r}: {statistics.mean(x[s].get('forward_passes', 0) for s in seeds):.0f} forwards, "
                         f"{x[seeds[0]].get('trainable_params', 0):,} trainable"
                         for r, x in ((row, a), (against, b)))
        out.append(f"- Claim: {claim}. {row} - {against}, paired by seed ({', '.join(map(str, seeds))}): "
                   f"{', '.join(f'{d:+.3f}' for d in diffs)}; mean {mean:+.3f}{spread}: **{verdict}** "
                   f"({cost}).")
    return ["Claims checked on these rows:", "", *out, ""] if out else []


def _superseded(task: str) -> list[str]:
    """What each superseded row's runs did: peak and final dev accuracy, then test accuracy."""
    out = []
    for t, row, label, seeds, settings in EXTRA_ROWS:
        if t != task or "superseded" not in label:
            continue
        runs = []
        for seed, r in _finished(task, row, seeds).items():
            peak = max(r["history"]["evals"], key=lambda e: e["dev_accuracy"])
            runs.append(f"seed {seed}: dev accuracy {peak['dev_accuracy']:.3f} at step {peak['step']}, "
                        f"{r['history']['evals'][-1]['dev_accuracy']:.3f} at the end; "
                        f"test {r['metrics']['accuracy']:.3f}")
        if runs:
            out += ["", f"{label.split(':')[0]} ({', '.join(f'{k}={v}' for k, v in settings.items())}): "
                    + "; ".join(runs) + ". A run whose dev accuracy falls from its peak diverged; "
                    "the table's row uses a smaller learning rate."]
    return out


STREAMS = RESULTS / "streams.json"
CHECKED_STEPS = 3


def _zo_runs(pattern: str):
    """(key, results.json) of the finished ZO runs under RESULTS matching `pattern`, key as in streams.json."""
    from zoo.finetune.loop import FIRST_ORDER

    for f in sorted(RESULTS.glob(pattern)):
        r = json.loads(f.read_text())
        if r["config"].get("estimator") not in (None, *FIRST_ORDER):
            yield str(f.parent.relative_to(RESULTS)), r


def _checked_streams() -> dict:
    return json.loads(STREAMS.read_text()) if STREAMS.exists() else {}


def check_streams() -> dict:
    """The noise stream of each finished ZO run whose results.json predates `noise_stream`: its first
    CHECKED_STEPS steps rerun under each stream's backend, and the stream whose losses agree to within
    1e-5 (the scorer's changes since move them by ~1e-6; another stream's, by ~1e-3) is written to
    streams.json. Only the first steps are checked: a run resumed from a checkpoint that did not name
    its stream continued on the stream of the resuming zoo."""
    import torch

    from zoo.finetune.commands import run_finetune
    from zoo.finetune.loop import FinetuneConfig
    from zoo.perturb.backend import backend_for_stream

    found = _checked_streams()
    for key, r in _zo_runs("*/*/seed*/results.json"):
        if r.get("noise_stream") or key in found:
            continue
        cfg = {**r["config"], "steps": CHECKED_STEPS, "eval_every": CHECKED_STEPS, "checkpoint_every": 10**6, "test_limit": 8}
        gaps = {}
        for stream in ("philox", "torch-generator"):
            backend = backend_for_stream(stream, torch.device("cpu"))
            run = FinetuneConfig(**{**cfg, "estimator_options": {**cfg["estimator_options"], "backend": backend}})
            with tempfile.TemporaryDirectory() as tmp:
                losses = run_finetune(run, tmp, {}, progress=False)["history"]["loss"]
            gaps[stream] = max(abs(a - b) for a, b in zip(losses, r["history"]["loss"]))
            if gaps[stream] < 1e-5:
                break
        stream = next((s for s, g in gaps.items() if g < 1e-5), None)
        found[key] = {"stream": stream, "steps_checked": CHECKED_STEPS, "max_loss_gap": gaps}
        print(f"{key}: {stream} ({', '.join(f'{s} {g:.1e}' for s, g in gaps.items())})", flush=True)
        STREAMS.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")  # after each run: resumable
    return found


def _stream_lines(task: str) -> list[str]:
    """Which finished ZO runs of a task drew their directions from torch-generator, with how to rerun them."""
    found = _checked_streams()
    other, unknown = [], []
    for key, r in _zo_runs(f"{task}/*/seed*/results.json"):
        stream = r.get("noise_stream") or found.get(key, {}).get("stream")
        if stream == "torch-generator":
            other.append(f"{key.split('/')[1]} seed {r['config']['seed']}")
        elif stream is None:
            unknown.append(key)
    lines = []
    if other:
        lines.append(f"Noise streams: {', '.join(other)} drew their directions from the torch-generator stream "
                     "(the only one zoo had when they started); every other ZO run here drew philox, today's "
                     "default on a CPU with a C compiler. To rerun those with the same directions, add "
                     "`--backend torch` to `zoo finetune` (a `backend` estimator option). Runs recorded before "
                     f"results.json named the stream were matched on their first {CHECKED_STEPS} steps by "
                     "`python benchmarks/paper_table.py streams` (benchmarks/results/paper/streams.json). Their "
                     "later steps are not checked: until commit 368149a a checkpoint that named no stream resumed "
                     "on the resuming zoo's, so a run of 2026-11-24 resumed after the philox stream landed went on "
                     "with philox directions.")
    if unknown:
        lines.append(f"Noise stream not yet checked: {', '.join(unknown)} (`python benchmarks/paper_table.py streams`).")
    return lines + [""] if lines else []


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["run", "report", "streams"])
    ap.add_argument("--only", default=None, help="run only this task (sst2 or rte)")
    args = ap.parse_args(argv)
    if args.action == "report":
        report(ROOT / "docs" / "results.md")
        return 0
    if args.action == "streams":
        check_streams()
        report(ROOT / "docs" / "results.md")
        return 0
    for task, row, seed, kind, settings in planned():
        if (args.only and task != args.only) or (task, row) in STOPPED:
            continue
        run_one(task, row, seed, kind, settings)
    report(ROOT / "docs" / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
