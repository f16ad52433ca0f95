"""benchmarks/squad_table.py: its commands are valid zoo commands, and its report replaces only its section."""

import json
import shlex

import pytest

from conftest import benchmark_script


@pytest.fixture
def squad(tmp_path, monkeypatch):
    module = benchmark_script("squad_table")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    return module


def test_every_finetune_command_is_a_valid_squad_run_with_the_tables_settings(squad):
    from zoo.cli import build_parser, finetune_config

    parser = build_parser()
    kinds = set()
    for row, seed, kind, settings in squad.planned():
        args = parser.parse_args(shlex.split(squad.command(row, seed, kind, settings))[1:])
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
                     ("mezo-sgd", "lora", "ce")}


def test_the_report_fills_its_section_in_place_and_keeps_the_others(squad, tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\n## SST2\n\nkept\n\n## SQuAD (generation): an old draft\n\nold text\n\n"
                   "## Structured pruning\n\nalso kept\n")
    for seed, f1 in zip(squad.SEEDS, (0.30, 0.40, 0.50)):
        out = squad.folder("mezo-ce", seed)
        out.mkdir(parents=True)
        out.joinpath("results.json").write_text(json.dumps({
            "metrics": {"f1": f1, "exact_match": f1 / 2}, "forward_passes": 200, "wall_time_s": 60.0,
            "history": {"evals": [{"step": 0, "dev_f1": 0.2}, {"step": 100, "dev_f1": f1}]}}))
    squad.report(doc)
    text = doc.read_text()
    assert "old text" not in text and text.count("## SQuAD (generation)") == 1
    assert text.index("## SST2\n\nkept") < text.index("## SQuAD (generation)") < text.index("## Structured pruning\n\nalso kept")
    row = next(line for line in text.splitlines() if line.startswith("| MeZO (full), CE |"))
    assert row.startswith("| MeZO (full), CE | 40.0 ± 10.0 | 20.0 ± 5.0 | 3 | 84.7 | 200 | 60 s |")
    assert "- MeZO (full), CE, seed 2: dev 20.0 (step 0), 50.0 (step 100)" in text
    squad.report(doc)  # a second report changes nothing
    assert doc.read_text() == text
