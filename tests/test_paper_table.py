"""benchmarks/paper_table.py's report: the verdicts it prints on the issue's targets follow from the runs."""

import json
import shlex
import statistics
from inspect import signature

import pytest

from conftest import benchmark_script


@pytest.fixture
def paper(tmp_path, monkeypatch):
    module = benchmark_script("paper_table")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(module, "STREAMS", tmp_path / "results" / "streams.json")
    return module


def _write(paper, task, row, seed, accuracy, dev_loss=(0.5, 0.4)):
    out = paper.folder(task, row, seed)
    out.mkdir(parents=True)
    evals = [{"step": 0, "dev_accuracy": 0.5, "dev_loss": dev_loss[0]},
             {"step": 500, "dev_accuracy": 0.6, "dev_loss": dev_loss[1]}]
    estimator = {"ft-adam": "adam", "zero-shot-review": None, "zero-shot-mezo": None}.get(row, "mezo-sgd")
    out.joinpath("results.json").write_text(json.dumps({
        "config": {"estimator": estimator, "seed": seed}, "metrics": {"accuracy": accuracy}, "forward_passes": 1000, "wall_time_s": 1.0,
        "history": {"evals": evals, "loss": [0.5], "step_seconds": [2.0, 4.0, 3.0]}}))


def _target_row(text, label):
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |") and "target" not in line
                and line.count("|") == 6)


def test_targets_follow_from_the_finished_runs(paper, tmp_path):
    _write(paper, "sst2", "zero-shot-review", None, 0.70)
    _write(paper, "sst2", "zero-shot-mezo", None, 0.60)
    for seed, acc in zip(paper.SEEDS, (0.80, 0.82, 0.81)):
        _write(paper, "sst2", "ft-adam", seed, acc)
    for seed, acc in zip(paper.SEEDS, (0.76, 0.74, 0.78)):  # mean 0.76: +0.06 over 0.70, 0.05 behind 0.81
        _write(paper, "sst2", "mezo", seed, acc)
    _write(paper, "sst2", "mezo-prefix-1k", 0, 0.79)  # an extra row with one seed joins the targets
    _write(paper, "sst2", "mezo-lora-lr3e-3", 0, 0.99)  # a superseded row does not
    doc = tmp_path / "results.md"
    paper.report(doc)
    text = doc.read_text()

    assert "Best zero-shot: 0.700 (review template" in text
    assert "First-order Adam: 0.810 (n=3), +0.110 over the best zero-shot with gradients." in text
    assert "over best zero-shot (target >= +0.050) |" in text  # the issue sets the margin on SST-2
    full = _target_row(text, "MeZO (full)")
    assert full == "| MeZO (full) | 0.760 | 3 | +0.060 (met) | 0.050 (not met) |"
    assert _target_row(text, "MeZO (prefix), 1,000 steps") == \
        "| MeZO (prefix), 1,000 steps | 0.790 | 1 | +0.090 (met, 1 of 3 seeds) | 0.020 (met, 1 of 3 seeds) |"
    assert not any(line.startswith("| MeZO (LoRA), lr 3e-3") and line.count("|") == 6 for line in text.splitlines())
    # the table row carries the mean and the sample std over the seeds
    assert f"| 0.760 ± {statistics.stdev([0.76, 0.74, 0.78]):.3f} | 3 |" in text
    assert "A full-parameter MeZO step took 3.0 s here" in text  # the median of every step time


def test_the_zero_shot_margin_is_a_target_on_sst2_only(paper, tmp_path):
    for task in ("sst2", "rte"):
        _write(paper, task, "zero-shot-mezo", None, 0.53)
        _write(paper, task, "ft-adam", 0, 0.54)
        _write(paper, task, "mezo", 0, 0.51)
    doc = tmp_path / "results.md"
    paper.report(doc)
    sst2, rte = doc.read_text().split("## RTE")
    assert "(target >= +0.050) |" in sst2 and "shown for reference" not in sst2
    assert "(target >= +0.050; set on SST-2, shown for reference) |" in rte
    assert "First-order Adam: 0.540 (n=1), +0.010 over the best zero-shot with gradients." in rte


def test_rows_without_runs_and_a_running_seed(paper, tmp_path):
    traj = paper.folder("rte", "mezo", 1)
    traj.mkdir(parents=True)
    traj.joinpath("trajectory.json").write_text(json.dumps({
        "step": 75, "history": {"evals": [{"step": 0, "dev_accuracy": 0.5, "dev_loss": 0.7},
                                          {"step": 50, "dev_accuracy": 0.5, "dev_loss": 0.69}],
                                "loss": [0.7, 0.6]}}))
    doc = tmp_path / "results.md"
    paper.report(doc)
    text = doc.read_text()
    assert "| MeZO (full) | mezo | unfinished: seed 1 at step 75 of 500 | 0 |" in text
    assert "Unfinished, mezo seed 1 (step 75 of 500)" in text and "mean of the last 2 steps: 0.650" in text
    assert "Targets on RTE" not in text  # no zero-shot and no Adam run: no verdict is printed


def test_runs_of_the_older_noise_stream_are_named_with_how_to_rerun_them(paper, tmp_path):
    for seed, stream in zip(paper.SEEDS, ("torch-generator", "philox", None)):
        _write(paper, "sst2", "mezo-prefix", seed, 0.8)
        f = paper.folder("sst2", "mezo-prefix", seed) / "results.json"
        r = json.loads(f.read_text())
        if stream:
            r["noise_stream"] = stream
        f.write_text(json.dumps(r))
    _write(paper, "sst2", "ft-adam", 0, 0.8)  # first-order: no stream to name
    doc = tmp_path / "results.md"
    paper.report(doc)
    text = doc.read_text()
    assert "Noise streams: mezo-prefix seed 0 drew their directions from the torch-generator stream" in text
    assert "`--backend torch`" in text
    assert "Noise stream not yet checked: sst2/mezo-prefix/seed2 " in text and "ft-adam" not in text.split("Noise")[1]

    paper.STREAMS.parent.mkdir(parents=True, exist_ok=True)
    paper.STREAMS.write_text(json.dumps({"sst2/mezo-prefix/seed2": {"stream": "torch-generator"}}))
    paper.report(doc)
    assert "mezo-prefix seed 0, mezo-prefix seed 2 drew" in doc.read_text() and "not yet checked" not in doc.read_text()


def test_every_command_in_the_report_runs_what_the_script_runs(paper):
    from zoo.cli import build_parser, eval_options, finetune_config
    from zoo.finetune.commands import run_eval

    parser = build_parser()
    defaults = {k: p.default for k, p in signature(run_eval).parameters.items() if p.default is not p.empty}
    runs = paper.planned()
    kinds = set()
    for task, row, seed, kind, settings in runs:
        argv = shlex.split(paper.command(task, row, seed, kind, settings))
        assert argv[0] == "zoo"
        args = parser.parse_args(argv[1:])
        assert (args.command, args.model, args.task) == (kind, paper.MODEL, task)
        if kind == "eval":
            expected = defaults | paper.eval_options(seed, settings)
            assert eval_options(args) == {k: expected[k] for k in eval_options(args)}
        else:
            assert finetune_config(args) == paper.finetune_config(task, seed, settings)
        kinds.add((kind, settings.get("estimator"), settings.get("tuning"), settings.get("icl", 0),
                   settings.get("linear_probe", False)))
    # every kind of row was checked: zero-shot, ICL, linear probing, Adam, the three MeZO modes, and
    # AdaZeta on TT adapters, MeZO with prompt tuning and with sparse deltas
    assert len(kinds) == 10
    assert len(runs) == sum(len(paper._seeds(t, r)) if s is not None else 1 for t, r, s, *_ in runs if s in (None, 0))


def test_the_report_lists_the_commands_with_their_seeds(paper, tmp_path):
    path = tmp_path / "results.md"
    paper.report(path)
    text = path.read_text()
    for task in ("sst2", "rte"):
        section = text.split(f"## {task.upper()}")[1].split("\n## ")[0]
        loops = [line for line in section.splitlines() if line.startswith("for S in 0 1 2; do zoo finetune")]
        assert any("--estimator mezo-sgd --tuning prefix" in line for line in loops)
        assert all(f"--task {task} " in line for line in loops)


def test_a_stopped_row_is_reported_as_stopped_with_why_and_run_leaves_it(paper, tmp_path, monkeypatch):
    task, row = next(iter(paper.STOPPED))
    seed = paper._seeds(task, row)[0]
    out = paper.folder(task, row, seed)
    out.mkdir(parents=True)
    out.joinpath("trajectory.json").write_text(json.dumps({
        "step": 30, "history": {"evals": [{"step": 0, "dev_accuracy": 0.5, "dev_loss": 0.7},
                                          {"step": 20, "dev_accuracy": 0.4, "dev_loss": 0.8}], "loss": [0.1]}}))
    doc = tmp_path / "results.md"
    paper.report(doc)
    text = doc.read_text()
    assert f"| stopped: seed {seed} at step 30 of " in text and "unfinished" not in text
    assert f"Stopped, {row} seed {seed} (step 30 of " in text and paper.STOPPED[(task, row)][1:] in text

    ran = []
    monkeypatch.setattr(paper, "run_one", lambda t, r, *rest: ran.append((t, r)))
    monkeypatch.setattr(paper, "report", lambda path: None)
    paper.main(["run", "--only", task])
    assert ran and (task, row) not in ran


def test_regenerating_the_report_keeps_the_sections_written_by_hand(paper, tmp_path):
    doc = tmp_path / "results.md"
    paper.report(doc)
    doc.write_text(doc.read_text() + "## SQuAD by hand\n\nkept text\n\n## Pruning\n\nalso kept\n")
    _write(paper, "sst2", "zero-shot-review", None, 0.70)
    paper.report(doc)
    text = doc.read_text()
    assert "| zero shot review | review | 0.700 |" in text
    assert text.count("## SST2") == 1 and text.count("## SQuAD by hand") == 1
    assert text.index("## RTE") < text.index("## SQuAD by hand\n\nkept text") < text.index("## Pruning\n\nalso kept")


@pytest.mark.parametrize("deltas, verdict", [
    ((0.03, 0.04, 0.05), "reproduced"),
    ((0.03, -0.04, 0.02), "not resolved: within 2 standard errors"),
    ((-0.03, -0.04, -0.05), "not reproduced: the other way round"),
    ((0.03,), "not resolved: one seed"),
])
def test_a_claim_is_judged_on_the_seeds_both_rows_finished_paired(paper, tmp_path, deltas, verdict):
    task, row, against, _ = paper.CLAIMS[0]
    for seed, delta in zip(paper.SEEDS, deltas):
        _write(paper, task, against, seed, 0.80)
        _write(paper, task, row, seed, 0.80 + delta)
    if len(deltas) == 1:
        _write(paper, task, against, 2, 0.10)  # a seed the row has not finished is left out
    lines = paper._claims(task)
    claim = next(line for line in lines if line.startswith("- Claim:") and row in line)
    assert f"**{verdict}**" in claim
    assert ", ".join(f"{d:+.3f}" for d in deltas) in claim
