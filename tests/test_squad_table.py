"""benchmarks/squad_table.py: its commands are valid zoo commands, and its report replaces only its section."""

import json
import shlex

import pytest

from conftest import benchmark_script


@pytest.fixture
def squad(tmp_path, monkeypatch):
    module = benchmark_script("squad_table")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(module, "OBJECTIVE_RESULTS", tmp_path / "objective")
    return module


def test_every_finetune_command_is_a_valid_squad_run_with_the_tables_settings(squad):
    from zoo.cli import build_parser, finetune_config

    parser = build_parser()
    kinds = set()
    for row, seed, kind, settings in squad.planned():
        args = parser.parse_args(shlex.split(squad.command(row, seed, kind, settings))[1:])
        if kind == "objective":  # a classification run on 1 - accuracy, with the cpu suite's MeZO settings
            cfg = finetune_config(args)
            cfg.validate()
            assert (cfg.task, cfg.objective, cfg.seed, cfg.eps) == (settings["task"], "accuracy", seed, settings["eps"])
            assert {k: getattr(cfg, k) for k in squad.OBJECTIVE_TRAIN} == squad.OBJECTIVE_TRAIN
            kinds.add((cfg.estimator, cfg.tuning, cfg.objective))
            continue
        assert (args.command, args.model, args.task) == (kind, squad.MODEL, "squad")
        if kind == "eval":
            assert (args.limit, args.icl, args.seed) == (squad.TEST, settings.get("icl", 0), seed or 0)
            continue
        cfg = finetune_config(args)
        cfg.validate()
        assert (cfg.seed, cfg.test_limit, cfg.k, cfg.batch_size) == (seed, squad.TEST, squad.TRAIN["k"],
                                                                    squad.TRAIN["batch_size"])
        assert {k: getattr(cfg, k) for k in settings} == settings
        kinds.add((cfg.estimator, cfg.tuning, cfg.objective))
    assert kinds == {("mezo-sgd", "full", "ce"), ("mezo-sgd", "full", "f1"), ("adam", "full", "ce"),
                     ("mezo-sgd", "lora", "ce"), ("mezo-sgd", "blocks", "accuracy")}


def test_the_report_fills_its_section_in_place_and_keeps_the_others(squad, tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\n## SST2\n\nkept\n\n## SQuAD (generation): an old draft\n\nold text\n\n"
                   "## Structured pruning\n\nalso kept\n")
    for seed, f1 in zip(squad.SEEDS, (0.30, 0.40, 0.50)):
        out = squad.folder("mezo-ce", seed)
        out.mkdir(parents=True)
        out.joinpath("results.json").write_text(json.dumps({
            "metrics": {"f1": f1, "exact_match": f1 / 2}, "forward_passes": 200, "wall_time_s": 60.0,
            "median_step_s": 0.5 + seed,
            "history": {"evals": [{"step": 0, "dev_f1": 0.2}, {"step": 100, "dev_f1": f1}], "loss": [1.0] * 100}}))
    squad.report(doc)
    text = doc.read_text()
    assert "old text" not in text and text.count("## SQuAD (generation)") == 1
    assert text.index("## SST2\n\nkept") < text.index("## SQuAD (generation)") < text.index("## Structured pruning\n\nalso kept")
    row = next(line for line in text.splitlines() if line.startswith("| MeZO (full), CE |"))
    assert row.startswith("| MeZO (full), CE | 40.0 ± 10.0 | 20.0 ± 5.0 | 3 | 84.7 | 200 | 1.5 | 60 s |")
    assert "- MeZO (full), CE, seed 2: dev 20.0 (step 0), 50.0 (step 100)" in text
    squad.report(doc)  # a second report changes nothing
    assert doc.read_text() == text


def test_an_accuracy_row_sits_beside_the_cross_entropy_runs_of_its_seeds_and_counts_the_steps_that_moved(
        squad, tmp_path, monkeypatch):
    monkeypatch.setattr(squad, "CE_RUNS", tmp_path / "cpu")
    row, _, seeds, settings = squad.OBJECTIVE_ROWS[0]
    base = {"model": "smollm2-135m", "task": settings["task"], "lr": 3e-4, "steps": 3}
    for seed, (ce, acc) in zip(seeds[:2], ((0.80, 0.70), (0.90, 0.60))):
        ce_dir = tmp_path / "cpu" / settings["task"] / "mezo-sgd" / "lr0.0003-eps0.001" / f"seed{seed}"
        ce_dir.mkdir(parents=True)
        ce_dir.joinpath("results.json").write_text(json.dumps(
            {"config": {**base, "objective": "ce", "seed": seed}, "metrics": {"accuracy": ce}}))
        out = squad.folder(row, seed)
        out.mkdir(parents=True)
        out.joinpath("results.json").write_text(json.dumps({
            "config": {**base, "objective": "accuracy", "seed": seed}, "metrics": {"accuracy": acc},
            "history": {"step_losses": [[0.5, 0.5], [0.5, 0.4375], [0.25, 0.3125]]}}))
    ce_dir.joinpath("results.json").write_text(json.dumps(  # seed 1's cross-entropy run had other settings
        {"config": {**base, "lr": 1e-3, "objective": "ce", "seed": 1}, "metrics": {"accuracy": 0.90}}))
    lines = squad.objective_lines()
    table = next(line for line in lines if line.startswith(f"| {squad.OBJECTIVE_ROWS[0][1]} |"))
    assert table.startswith("| SST-2 | 0.850 ± 0.071 | 0.650 ± 0.071 | 0.001 | 2, 2 | 2 |")
    assert any("seeds [1]: the cross-entropy run's config differs" in line for line in lines)


def _finish(squad, row, seed, f1):
    out = squad.folder(row, seed)
    out.mkdir(parents=True)
    out.joinpath("results.json").write_text(json.dumps({"metrics": {"f1": f1, "exact_match": f1 / 2}}))


def test_claims_pair_each_seed_and_let_the_seedless_zero_shot_stand_for_every_seed(squad):
    _finish(squad, "zero-shot", None, 0.20)
    for seed, (ce, f1) in zip(squad.SEEDS, ((0.30, 0.21), (0.32, 0.18), (0.31, 0.22))):
        _finish(squad, "mezo-ce", seed, ce)
        _finish(squad, "mezo-f1", seed, f1)
    for seed, f1 in zip(squad.SEEDS, (0.40, 0.45, 0.42)):  # first-order FT well ahead: "matches" fails
        _finish(squad, "ft-adam", seed, f1)
    _finish(squad, "mezo-lora-ce", 0, 0.20)  # one seed only: paired on seed 0, and unresolved
    lines = {line.split(". F1 ")[1].split(",")[0]: line for line in squad.claims() if line.startswith("- Claim")}
    assert set(lines) == {"mezo-ce − zero-shot", "mezo-f1 − zero-shot", "mezo-ce − mezo-f1", "mezo-ce − ft-adam",
                          "mezo-ce − mezo-lora-ce"}
    assert "+10.0, +12.0, +11.0; mean +11.0 ± 0.6 (SE): **reproduced**" in lines["mezo-ce − zero-shot"]
    assert "+1.0, -2.0, +2.0; mean +0.3" in lines["mezo-f1 − zero-shot"]
    assert "**not resolved: within 2 standard errors**" in lines["mezo-f1 − zero-shot"]
    assert "paired by seed (0): +10.0; mean +10.0: **not resolved: one seed**" in lines["mezo-ce − mezo-lora-ce"]
    assert "-10.0, -13.0, -11.0; mean -11.3 ± 0.9 (SE): **not reproduced: ft-adam ahead**" in lines["mezo-ce − ft-adam"]


def test_a_tie_claim_holds_when_neither_row_is_ahead_beyond_2_standard_errors(squad):
    for seed, (ce, ft) in zip(squad.SEEDS, ((0.30, 0.31), (0.32, 0.30), (0.31, 0.31))):
        _finish(squad, "mezo-ce", seed, ce)
        _finish(squad, "ft-adam", seed, ft)
    (line,) = [line for line in squad.claims() if "ft-adam" in line]
    assert "**consistent: no difference beyond 2 standard errors**" in line


@pytest.mark.parametrize("diffs, verdict", [
    ((3.0, 4.0, 5.0), "reproduced"),
    ((-3.0, -4.0, -5.0), "not reproduced: the other way round"),
    ((3.0, -4.0, 2.0), "not resolved: within 2 standard errors"),
    ((3.0,), "not resolved: one seed"),
])
def test_paired_verdict_is_the_mean_difference_against_twice_its_standard_error(diffs, verdict):
    import numpy as np

    from zoo.bench.claims import paired_verdict

    mean, se, got = paired_verdict(list(diffs))
    assert got == verdict and mean == pytest.approx(np.mean(diffs))
    assert se == (None if len(diffs) == 1 else pytest.approx(np.std(diffs, ddof=1) / np.sqrt(len(diffs))))


def test_each_trend_line_names_its_own_seed_and_counts_the_steps_that_moved(squad):
    out = squad.folder("mezo-f1", 2)  # seeds 0 and 1 unfinished: the line must still say seed 2
    out.mkdir(parents=True)
    pairs = [[-0.5, -0.5]] * 30 + [[-0.25, -0.5]] * 70
    out.joinpath("results.json").write_text(json.dumps({
        "metrics": {"f1": 0.3, "exact_match": 0.1}, "forward_passes": 200, "wall_time_s": 60.0,
        "history": {"evals": [{"step": 0, "dev_f1": 0.2}, {"step": 100, "dev_f1": 0.3}],
                    "loss": [-0.5] * 25 + [-0.4] * 50 + [-0.375] * 25, "step_losses": pairs}}))
    text = squad.section()
    assert ("- MeZO (full), F1 objective, seed 2: dev 20.0 (step 0), 30.0 (step 100); training loss, mean of the "
            "first 25 steps -0.500, of the last 25 -0.375; 70 of 100 steps moved") in text
