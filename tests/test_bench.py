"""`zoo bench`: suites expand from the registry, runs resume, forward counts are checked."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import torch

import zoo
from zoo.bench import load_suite
from zoo.cli import main
from zoo.estimators import MeZOSGD, registry
from zoo.provenance import describe, machine
from conftest import interrupt_at


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    assert main(["bench", "smoke", "--out", str(out), "--quiet"]) == 0
    return out


def test_smoke_preset_covers_every_estimator_and_baseline(smoke):
    rows = json.loads((smoke / "summary.json").read_text())
    methods = {r["method"] for r in rows}
    assert set(zoo.available()) | {"sgd", "adam", "zero-shot", "linear-probe"} == methods
    for r in rows:
        assert 0.0 <= r["test_accuracy"][0] <= 1.0
        if r["method"] in zoo.available():  # the most whole steps within 16 forwards (zo-cons: 3 x 5)
            cost = zoo.estimators.spec(r["method"])
            declared = cost.forwards_for(cost.steps_within(16, **cost.defaults), **cost.defaults)
            assert r["forward_count_ok"] and r["forward_passes"] == declared > 16 - 6 and r["seeds"] == 2
    table = (smoke / "summary.md").read_text()
    assert "| mezo-sgd |" in table and "MISMATCH" not in table
    assert f"Runs finished: {len(load_suite('smoke').runs())} of {len(load_suite('smoke').runs())}." in table
    for png in ("curves.png", "test_curves.png", "cost.png"):
        assert (smoke / png).read_bytes()[:4] == b"\x89PNG"
    assert "](test_curves.png)" in table and "keep their final point only" not in table
    grad = json.loads((smoke / "gradient_quality.json").read_text())["rows"]
    labels = {r["label"]: r for r in grad}
    assert set(zoo.available()) <= set(labels) and labels["n-spsa n=16"]["forwards"] == 32
    assert all(-1 <= r["cosine"] <= 1 and r["relative_mse"] > 0 for r in grad)
    assert "## Gradient quality" in table and (smoke / "gradient_quality.png").exists()
    runs = list((smoke / "runs").rglob("results.json"))
    suite = load_suite("smoke")
    mem = json.loads((smoke / "memory.json").read_text())["rows"]
    assert [r["method"] for r in mem] == ["inference", *suite.estimator_names(), "sgd", "adam"]
    assert all(r["peak_bytes"] >= r["base_bytes"] > 0 for r in mem)
    assert "## Memory against inference" in table and "## Published claims, checked" in table
    assert len(runs) == len(suite.runs()) + 1 + len(suite.seeds)  # + zero-shot + one probe per seed
    assert all(json.loads(p.read_text())["peak_memory_scope"] == "run" for p in runs) and " †" not in table
    # where the runs were measured comes from the runs themselves (runs and baselines alike)
    assert f"Runs measured on: {describe([machine()] * len(runs))}." in table
    assert f"torch {torch.__version__}, CPU ({len(runs)} runs); finished" in table


def _report_without(smoke, tmp_path, field: str, lowest_peak: bool = False) -> str:
    """The smoke report rewritten from a copy where one LeZO run lacks `field`, as results from
    before that field was recorded do; `lowest_peak` makes that run's peak the lowest of LeZO's."""
    import shutil

    from zoo.bench.report import write_report

    copy = tmp_path / "copy"
    shutil.copytree(smoke, copy)
    found = sorted(p for p in (copy / "runs").rglob("results.json") if "/lezo/" in str(p))
    r = json.loads(found[0].read_text())
    del r[field]
    if lowest_peak:
        r["peak_memory_bytes"] = min(json.loads(p.read_text())["peak_memory_bytes"] for p in found) - 1
    found[0].write_text(json.dumps(r))
    return write_report(load_suite("smoke"), copy, "zoo bench smoke").read_text()


def test_report_marks_peaks_recorded_as_the_processs(smoke, tmp_path):
    """Results from before per-run peaks carry no scope: their peak may be an earlier run's, and the table says so."""
    table = _report_without(smoke, tmp_path, "peak_memory_scope", lowest_peak=True)
    marked = [line for line in table.splitlines() if " †" in line and line.startswith("|")]
    assert len(marked) == 1 and "| lezo |" in marked[0] and "this run was recorded before" in table


def test_a_methods_peak_is_the_lowest_of_its_runs(smoke, tmp_path):
    """A run whose process still held memory freed by earlier runs must not set the method's peak."""
    import shutil

    from zoo.bench.report import collect

    copy = tmp_path / "copy"
    shutil.copytree(smoke, copy)
    found = sorted((copy / "runs").rglob("mezo-sgd/*/*/results.json"))
    for path, peak in zip(found, [900, 300, 5000, 400]):  # 2 lrs x 2 seeds, in MiB
        r = json.loads(path.read_text())
        r["peak_memory_bytes"] = peak * 2**20
        path.write_text(json.dumps(r))
    row = next(r for r in collect(load_suite("smoke"), copy) if r["method"] == "mezo-sgd")
    assert (row["peak_memory_bytes"], row["peak_spread_bytes"]) == (300 * 2**20, 4700 * 2**20)


def test_step_time_is_the_median_over_every_run_of_a_method(smoke, tmp_path):
    """One slow run (another job on the cores) must not set a method's s/step, whichever lr it used."""
    import shutil

    from zoo.bench.report import collect

    copy = tmp_path / "copy"
    shutil.copytree(smoke, copy)
    found = sorted((copy / "runs").rglob("mezo-sgd/*/*/results.json"))
    assert len(found) == 4  # 2 lrs x 2 seeds
    for i, path in enumerate(found):
        r = json.loads(path.read_text())
        r["median_step_s"] = [1.0, 2.0, 3.0, 40.0][i]
        path.write_text(json.dumps(r))
    row = next(r for r in collect(load_suite("smoke"), copy) if r["method"] == "mezo-sgd")
    assert row["s_per_step"] == 2.5 and row["timed_runs"] == 4
    assert row["s_per_forward"] == 2.5 / 2


def test_rerun_skips_finished_runs_and_an_interrupted_one_continues(smoke, monkeypatch):
    from zoo.bench import run_suite

    runs = sorted((smoke / "runs").rglob("results.json"))
    before = {p: p.stat().st_mtime_ns for p in runs}
    assert not list((smoke / "runs").rglob("checkpoint.pt"))  # finished runs keep metrics, not weights
    victim = next(p for p in runs if "mezo-sgd" in str(p))
    old = json.loads(victim.read_text())
    victim.unlink()
    undo = interrupt_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run_suite(load_suite("smoke"), smoke, progress=False)
    undo()
    assert (victim.parent / "checkpoint.pt").exists() and not victim.exists()
    assert main(["bench", "smoke", "--out", str(smoke), "--quiet"]) == 0
    new = json.loads(victim.read_text())
    assert new["metrics"] == old["metrics"] and new["model_calls"] == old["model_calls"]
    assert not (victim.parent / "checkpoint.pt").exists()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p != victim)


def test_publish_copies_the_table_and_its_plots(smoke, tmp_path):
    doc = tmp_path / "docs" / "bench.md"
    assert main(["bench", "smoke", "--out", str(smoke), "--report-only", "--docs", str(doc)]) == 0
    text = doc.read_text()
    assert "](bench_curves.png)" in text and (doc.parent / "bench_curves.png").exists()
    assert f"--docs {doc}" in text and "| mezo-sgd |" in text


def _suite_file(tmp_path, **over):
    raw = json.loads(open(load_suite("smoke").path).read())
    raw.update(over)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(raw))
    return path


def test_a_new_estimator_joins_the_suite_without_code_changes(tmp_path, monkeypatch):
    spec = registry.EstimatorSpec("my-mezo", MeZOSGD, "a copy for the test")
    monkeypatch.setitem(registry._REGISTRY, "my-mezo", spec)
    suite = load_suite(str(_suite_file(tmp_path)))
    assert "my-mezo" in suite.estimator_names()
    assert any(r.estimator == "my-mezo" for r in suite.runs())
    excluded = load_suite(str(_suite_file(tmp_path, exclude=["my-mezo"])))
    assert "my-mezo" not in excluded.estimator_names()


def test_a_wrong_forward_declaration_is_caught(tmp_path, monkeypatch, capsys):
    liar = registry.EstimatorSpec("liar", MeZOSGD, "declares 1 forward per step, runs 2",
                                  forwards=lambda step=0, **_: 1)
    monkeypatch.setitem(registry._REGISTRY, "liar", liar)
    path = _suite_file(tmp_path, estimators=["liar"], first_order={}, baselines=[], seeds=[0],
                       grid={"lr": [0.01], "eps": [0.01]}, forward_budget=4, memory={})
    assert main(["bench", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "declared 1 forwards x 4 steps = 4, the model ran 8" in err[0]


@pytest.mark.parametrize("raw,message", [
    ('{"name": "x", "models": [], "tasks": [], "budget": 3}', "unknown keys"),
    ('{"name": "x", "models": []}', "missing key 'tasks'"),
    ('{"name": "x",\n "models": [], "tasks": [],, }', ":2: malformed JSON"),
    ('{"name": "x", "models": [], "tasks": [], "exclude": ["mezzo-sgd"]}', "mezo-sgd"),
    ('{"name": "x", "models": [], "tasks": [], "baselines": ["icl"]}', "unknown baselines"),
    ('{"name": "x", "models": [{"model": "m", "template": "review"}], "tasks": ["sst2", "rte"]}',
     "template 'review' on rte"),
    ('{"name": "x", "models": [{"model": "m", "template": ["review"]}], "tasks": ["sst2"]}',
     "models[0].template must be"),
    ('{"name": "x", "models": [{"model": "m", "dtype": "fp8"}], "tasks": ["sst2"]}', "models[0] has dtype 'fp8'"),
    ('{"name": "x", "models": [{"model": "m", "device": "tpu"}], "tasks": ["sst2"]}', "models[0] has device 'tpu'"),
    ('{"name": "x", "models": [], "tasks": [], "memory": {"repeats": 0}}', "memory.repeats must be an integer >= 1"),
    ('{"name": "x", "models": [], "tasks": [], "forward_budget": 2.5}', "forward_budget must be an integer of at"),
    ('{"name": "x", "models": [{"model": "m", "forward_budget": 1}], "tasks": ["sst2"]}',
     "models[0].forward_budget must be an integer of at least 2, got 1"),
    ('{"name": "x", "models": [], "tasks": [], "test_curves": "yes"}', "test_curves must be true or false"),
])
def test_bad_suite_files_are_one_line_errors(tmp_path, capsys, raw, message):
    path = tmp_path / "bad.json"
    path.write_text(raw)
    assert main(["bench", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert main(["bench", "no-such-preset", "--out", str(tmp_path / "o")]) == 2


def test_a_model_entry_runs_in_its_own_dtype_into_its_own_folder(tmp_path):
    """A bfloat16 entry beside the float32 one: its runs and baselines load bfloat16 weights, train with
    the estimators' half-precision default, and the report names both entries apart."""
    raw = json.loads(open(load_suite("smoke").path).read())
    model = raw["models"][0]
    path = _suite_file(tmp_path, models=[model, {**model, "dtype": "bfloat16"}], estimators=["mezo-sgd"],
                       first_order={"adam": {"lr": [0.01]}}, seeds=[0], grid={"lr": [0.01], "eps": [0.01]},
                       forward_budget=4, gradient={}, memory={})
    out = tmp_path / "out"
    assert main(["bench", str(path), "--out", str(out), "--quiet"]) == 0
    half = out / "runs" / "fixture:tiny-llama-full-bfloat16" / "fixture:sentiment"
    zo = json.loads((half / "mezo-sgd" / "lr0.01-eps0.01" / "seed0" / "results.json").read_text())
    assert zo["config"]["dtype"] == "bfloat16" and zo["perturbation"] == "exact"
    adam = json.loads((half / "adam" / "lr0.01-eps0" / "seed0" / "results.json").read_text())
    assert adam["config"]["dtype"] == "bfloat16"
    fp32 = out / "runs" / "fixture:tiny-llama-full" / "fixture:sentiment" / "mezo-sgd" / "lr0.01-eps0.01" / "seed0"
    assert json.loads((fp32 / "results.json").read_text())["config"]["dtype"] == "float32"
    assert json.loads((half / "zero-shot" / "all" / "results.json").read_text())["config"]["dtype"] == "bfloat16"
    table = (out / "summary.md").read_text()
    assert "| fixture:tiny-llama (full, bfloat16) | fixture:sentiment | mezo-sgd |" in table
    assert "| fixture:tiny-llama (full) | fixture:sentiment | mezo-sgd |" in table


def test_a_model_entry_with_its_own_budget_gets_steps_from_it(tmp_path):
    from zoo.bench.report import _budgets

    raw = json.loads(open(load_suite("smoke").path).read())
    model = raw["models"][0]
    own = {**model, "tuning": "lora", "forward_budget": 40}
    suite = load_suite(str(_suite_file(tmp_path, models=[model, own], forward_budget=8, seeds=[0])))
    runs = suite.runs()
    for spec in runs:
        budget = 40 if spec.model is suite.models[1] else 8
        if spec.estimator in ("sgd", "adam"):  # backprop: MeZO's steps
            assert spec.steps == budget // 2, spec
        else:  # the most steps whose declared forwards fit the budget
            cost = zoo.estimators.spec(spec.estimator)
            assert cost.forwards_for(spec.steps, **cost.defaults) <= budget < cost.forwards_for(spec.steps + 1,
                                                                                                 **cost.defaults)
    assert {r.model["tuning"] for r in runs if r.estimator == "n-spsa"} == {"full", "lora"}
    assert _budgets(suite) == "8 forward passes (fixture:tiny-llama (lora): 40)"
    assert _budgets(load_suite(str(_suite_file(tmp_path, models=[model], forward_budget=8)))) == "8 forward passes"
    every = load_suite(str(_suite_file(tmp_path, models=[{**model, "forward_budget": 6}, own], forward_budget=8)))
    assert _budgets(every) == "forward passes fixture:tiny-llama (full): 6; fixture:tiny-llama (lora): 40"


def test_the_report_states_each_model_s_grid(tmp_path):
    from zoo.bench.report import _grids

    raw = json.loads(open(load_suite("smoke").path).read())
    model = raw["models"][0]
    suite = load_suite(str(_suite_file(tmp_path, models=[model, {**model, "tuning": "lora", "grid": {"lr": [0.5]}}],
                                       grid={"lr": [1e-5, 3e-5], "eps": [1e-3]},
                                       estimator_grid={"mezo-adam": {"lr": [1e-4]}})))
    assert _grids(suite) == ("fixture:tiny-llama (full): lr {1e-05, 3e-05} x eps {0.001}; "
                             "fixture:tiny-llama (lora): lr {0.5} x eps {0.001}; mezo-adam: lr {0.0001}")


def test_a_cuda_model_entry_without_a_gpu_is_a_one_line_error_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    raw = json.loads(open(load_suite("smoke").path).read())
    path = _suite_file(tmp_path, models=[{**raw["models"][0], "device": "cuda"}])
    assert main(["bench", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs on cuda" in err[0] and "no CUDA device" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("preset", ["smoke", "cpu", "cpu-short", "cpu-long", "gpu"])
def test_every_preset_runs_every_estimator_within_its_budget(preset):
    from zoo.bench import PRESETS

    assert preset in PRESETS
    suite = load_suite(preset)
    specs = suite.runs()
    names = set(zoo.estimators.available()) - set(suite.exclude)
    for model in suite.models:
        budget = suite.budget_for(model)
        for task in suite.tasks:
            mine = [s for s in specs if s.model is model and s.task == task]
            assert {s.estimator for s in mine} >= names and {s.seed for s in mine} == set(suite.seeds)
            for s in mine:
                assert s.steps >= 1 and s.declared_forwards <= budget, s


def test_the_cpu_preset_is_the_issue_s_suite():
    """SmolLM2's top 2 blocks on cached activations and MiniLM's head, TREC (headroom) and SST-2, k=16,
    3 seeds, one grid for every estimator, and the synthetic suite (issue 28)."""
    suite = load_suite("cpu")
    assert [(m["model"], m["mode"], m["tuning"], m.get("blocks")) for m in suite.models] == [
        ("smollm2-135m", "prompt", "blocks", 2), ("minilm-l6", "head", "head", None)]
    assert (suite.tasks, suite.k, len(suite.seeds), suite.synthetic) == (["trec", "sst2"], 16, 3, True)
    # one grid per model, the same for every estimator; SmolLM2's lr 3e-4 won on dev against 1e-4 for each of
    # the five estimators of the pilot (benchmarks/results/cpu-lr-pilot)
    assert [suite.grid_for(m)["lr"] for m in suite.models] == [[3e-4], [0.03, 0.1]] and not suite.estimator_grid


def test_the_cpu_short_preset_is_the_64_forward_suite():
    """The suite the committed docs/benchmarks-short.md measured (issue 5): full SmolLM2 at 64 forwards."""
    suite = load_suite("cpu-short")
    assert suite.name == "cpu-short" and suite.budget_for(suite.models[0]) == 64
    assert (suite.tasks, suite.models[0]["tuning"]) == (["sst2", "rte"], "full")


def test_a_template_map_gives_each_task_its_template():
    from zoo.bench.runner import _config

    suite = load_suite("cpu")
    seen = {(s.model["model"], s.task): _config(suite, s, Path("/nonexistent")).template for s in suite.runs()}
    assert seen == {("smollm2-135m", "sst2"): "review", ("smollm2-135m", "trec"): "words",
                    ("minilm-l6", "sst2"): None, ("minilm-l6", "trec"): None}


def test_peak_rss_sees_an_allocation_and_resets():
    import torch

    from zoo.memory import reset_peak, rss_peak_bytes

    reset_peak(cuda=False)
    before = rss_peak_bytes()
    x = torch.ones(16 * 2**20)  # 64 MiB, every page written
    del x
    grown = rss_peak_bytes() - before
    reset_peak(cuda=False)
    assert grown >= 60 * 2**20
    assert rss_peak_bytes() - before < grown / 2  # the freed block no longer counts


def test_a_reset_peak_does_not_start_from_heap_memory_freed_earlier():
    """glibc keeps freed heap pages resident: a reset that started from them overstated the next run's peak by GBs."""
    import ctypes

    from zoo.memory import reset_peak, rss_now_bytes, rss_peak_bytes

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim") or not reset_peak(cuda=False):
        pytest.skip("needs glibc and a writable /proc/self/clear_refs")
    libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    blocks = []
    for _ in range(4096):  # 256 MiB in 64 KiB blocks, under glibc's mmap threshold, so from the heap
        blocks.append(libc.malloc(64 * 1024))
        ctypes.memset(blocks[-1], 1, 64 * 1024)
    pins = blocks[::8]  # live blocks between the freed ones keep free() from shrinking the heap
    try:
        for b in set(blocks) - set(pins):
            libc.free(b)
        held = rss_now_bytes()
        reset_peak(cuda=False)
        assert rss_peak_bytes() < held - 128 * 2**20
    finally:
        for b in pins:
            libc.free(b)


def _row(method, acc, std, s_per_step=1.0, seeds=3, dev=0.5):
    return {"model": "m", "task": "rte", "method": method, "test_accuracy": (acc, std), "seeds": seeds,
            "s_per_step": s_per_step, "lr": 1e-5, "eps": 1e-3, "curves": [[{"step": 9, "dev_accuracy": dev}]] * seeds}


@pytest.mark.parametrize("sparse,lezo,expect", [
    ((0.60, 0.01), (0.45, 0.01, 0.25), ["| reproduced |", "not reproduced (accuracy lost)"]),
    ((0.50, 0.01), (0.55, 0.01, 0.25), ["**contradicted**", "| reproduced |"]),
    ((0.56, 0.05), (0.55, 0.01, 0.5), ["not reproduced (within 2 standard errors)", "speed-up below 3x"]),
])
def test_claims_get_the_verdict_their_numbers_give(tmp_path, sparse, lezo, expect):
    from zoo.bench.report import _claims_section

    rows = [_row("mezo-sgd", 0.55, 0.01), _row("sparse-mezo", *sparse), _row("lezo", lezo[0], lezo[1], lezo[2])]
    lines = _claims_section(rows, tmp_path)
    sparse_line = next(x for x in lines if "Sparse MeZO" in x)
    lezo_line = next(x for x in lines if "LeZO" in x)
    assert expect[0] in sparse_line and expect[1] in lezo_line


def test_a_sparse_run_identical_to_mezos_tests_no_claim(tmp_path):
    """Where no trained tensor is sparsified (a zero-initialised head), Sparse MeZO's runs are MeZO's."""
    from zoo.bench.report import _claims_section

    mezo = _row("mezo-sgd", 0.55, 0.01)
    same = _claims_section([mezo, {**mezo, "method": "sparse-mezo"}], tmp_path)
    assert "not tested: the same runs as MeZO's" in next(x for x in same if "Sparse MeZO" in x)
    for other in ({"lr": 3e-5}, {"curves": _row("x", 0.55, 0.01, dev=0.6)["curves"]}):
        differs = _claims_section([mezo, {**mezo, "method": "sparse-mezo", **other}], tmp_path)
        assert "within 2 standard errors" in next(x for x in differs if "Sparse MeZO" in x)


def test_claims_on_one_seed_stay_undecided(tmp_path):
    """One seed has no spread, so a difference of any size decides no accuracy claim."""
    from zoo.bench.report import _claims_section

    rows = [_row("mezo-sgd", 0.55, 0.0, seeds=1), _row("sparse-mezo", 0.70, 0.0, seeds=1),
            _row("lezo", 0.55, 0.0, 0.25, seeds=1)]
    lines = _claims_section(rows, tmp_path)
    assert "undecided" in next(x for x in lines if "Sparse MeZO" in x)
    assert "undecided" in next(x for x in lines if "LeZO" in x)  # 4x fast enough, accuracy unknown
    slow = _claims_section([rows[0], _row("lezo", 0.55, 0.0, 0.5, seeds=1)], tmp_path)
    assert "speed-up below 3x" in next(x for x in slow if "LeZO" in x)


def test_lezo_claim_takes_its_speed_up_from_side_by_side_timing_when_there_is_one(tmp_path):
    """The runs' medians say 4x (a verdict of reproduced); the same config timed in one process
    says MeZO-SGD's step is 1.2x LeZO's round by round, and that decides the claim."""
    from zoo.bench.report import _claims_section

    rows = [_row("mezo-sgd", 0.55, 0.01), _row("lezo", 0.55, 0.01, 0.25)]
    assert "| reproduced |" in next(x for x in _claims_section(rows, tmp_path) if "LeZO" in x)
    # rounds where the machine slowed down 3x: a ratio of medians (1.2 / 1.5) would say LeZO is slower
    times = {"inference": [1.0, 3.0, 3.0], "mezo-sgd": [1.2, 3.6, 3.6], "lezo": [1.0, 3.0, 1.5]}
    sbs = {"methods": list(times), "rounds": 3, "step_s": times}
    (tmp_path / "step_cost.json").write_text(json.dumps({"configs": [
        {"name": "m", "batch": 4, "seq": 8, "dtype": "float32", "rows": [], "side_by_side": sbs}]}))
    line = next(x for x in _claims_section([{**r, "model": "m (full)"} for r in rows], tmp_path) if "LeZO" in x)
    assert "1.20x per step (side by side in one process" in line
    assert "median of 3 rounds, range 1.20-2.40" in line
    assert "two forwards: 1.20x" in line and "speed-up below 3x" in line


def test_gradient_quality_resumes_from_its_finished_rows(tmp_path, monkeypatch):
    """An interrupted gradient section keeps its finished rows and computes only the rest, to the same bits."""
    from zoo.bench import gradient, runner

    suite = load_suite("smoke")
    runner._gradient_quality(suite, tmp_path, progress=False)
    final = tmp_path / "gradient_quality.json"
    full = json.loads(final.read_text())
    assert not (tmp_path / "gradient_quality.partial.json").exists()
    final.unlink()
    (tmp_path / "gradient_quality.partial.json").write_text(json.dumps({"meta": full["meta"],
                                                                         "rows": full["rows"][:3]}))
    from zoo.bench.report import _gradient_section

    shown = "\n".join(_gradient_section(tmp_path))  # a report written meanwhile shows the finished rows
    assert "**Partial**: the 3 rows" in shown and all(f"| {r['label']} |" in shown for r in full["rows"][:3])
    assert f"| {full['rows'][3]['label']} |" not in shown
    built = []
    real_get = gradient.estimators.get
    monkeypatch.setattr(gradient.estimators, "get", lambda *a, **k: built.append(a[0]) or real_get(*a, **k))
    runner._gradient_quality(suite, tmp_path, progress=False)
    assert json.loads(final.read_text())["rows"] == full["rows"]
    done = {gradient.settings(r["estimator"], r["hyper"]) for r in full["rows"][:3]}
    assert len(built) == len({gradient.settings(r["estimator"], r["hyper"]) for r in full["rows"][3:]} - done) > 0


def test_gradient_quality_draws_variants_with_equal_settings_once(tmp_path, monkeypatch):
    """mezo-sgd is n-spsa n=1 and each estimator's default sits in its sweep: one set of draws each,
    and a shared row holds the numbers its variant gets when drawn alone."""
    from zoo.bench import gradient, runner

    suite = load_suite("smoke")
    suite.gradient = {**suite.gradient, "n": [1, 4], "sparsity": [0.75, 0.9], "rank": [4]}
    built = []
    real_get = gradient.estimators.get
    monkeypatch.setattr(gradient.estimators, "get", lambda *a, **k: built.append((a[0], k)) or real_get(*a, **k))
    runner._gradient_quality(suite, tmp_path / "all", progress=False)
    rows = {r["label"]: r for r in json.loads((tmp_path / "all" / "gradient_quality.json").read_text())["rows"]}
    assert list(rows) == [v[0] for v in gradient.variants(suite.gradient)]
    drawn = [name for name, _ in built]
    # n-spsa n=1 (= mezo-sgd), n-spsa n=4 (= n-spsa), sparse-mezo s=0.75 (= sparse-mezo) share draws
    assert len(built) == len(rows) - 3 and drawn.count("subzero") == 2 and drawn.count("sparse-mezo") == 2
    for twin, first in [("n-spsa n=1", "mezo-sgd"), ("n-spsa n=4", "n-spsa"), ("sparse-mezo s=0.75", "sparse-mezo")]:
        keep = ("label", "estimator", "hyper")
        assert {k: v for k, v in rows[twin].items() if k not in keep} == \
            {k: v for k, v in rows[first].items() if k not in keep}
    # drawn alone, the twin gives the numbers it shared
    suite.gradient = {**suite.gradient, "n": [1], "sparsity": [], "rank": []}
    monkeypatch.setattr(gradient, "variants", lambda sweeps: [("n-spsa n=1", "n-spsa", {"n": 1})])
    runner._gradient_quality(suite, tmp_path / "alone", progress=False)
    (alone,) = json.loads((tmp_path / "alone" / "gradient_quality.json").read_text())["rows"]
    assert alone == rows["n-spsa n=1"]


@pytest.mark.parametrize("ratio, expect", [(0.94, "not reproduced (within 2"), (0.3, "reproduced |"),
                                           (3.0, "**contradicted**")])
def test_subzero_variance_claim_weighs_the_sampling_error_of_32_draws(tmp_path, ratio, expect):
    """With 32 draws the log of a relative variance is uncertain by about sqrt(2/32) = 0.25 each: a 6% lower
    variance is noise, a 3x lower one is not."""
    from zoo.bench.report import _claims_section

    rows = [{"label": "mezo-sgd", "estimator": "mezo-sgd", "relative_variance": 1e8, "cosine": 9e-5, "samples": 32},
            {"label": "subzero", "estimator": "subzero", "relative_variance": ratio * 1e8, "cosine": 9e-5,
             "samples": 32}]
    (tmp_path / "gradient_quality.json").write_text(json.dumps({"meta": {}, "rows": rows}))
    line = next(line for line in _claims_section([], tmp_path) if "SubZero" in line)
    assert expect in line and "± 0.35" in line


@pytest.mark.parametrize("forwards,bias", [(2, 0.0), (8, 0.0), (2, 0.7)])
def test_equal_budget_mse_matches_averaging_draws(forwards, bias):
    """The report's equal-forwards column against the MSE of really averaging budget/f draws."""
    from zoo.bench.report import equal_budget_mse

    rng = np.random.default_rng(forwards)
    d, budget, sigma = 40, 32, 0.5
    g = rng.standard_normal(d)
    shift = bias * rng.standard_normal(d)

    def draws(m):
        return g + shift + sigma * rng.standard_normal((m, d))

    one = draws(4000)
    gn2 = float(g @ g)
    row = {"forwards": forwards,
           "relative_mse": float(((one - g) ** 2).sum(1).mean()) / gn2,
           "relative_variance": float(((one - one.mean(0)) ** 2).sum(1).sum() / (len(one) - 1)) / gn2}
    m = budget // forwards
    means = np.stack([draws(m).mean(0) for _ in range(4000)])
    want = float(((means - g) ** 2).sum(1).mean()) / gn2
    assert equal_budget_mse(row, budget) == pytest.approx(want, rel=0.05)
    assert np.isnan(equal_budget_mse({"forwards": 2, "relative_mse": 1.0}, budget))  # no variance, no claim


def test_only_runs_the_selected_runs_and_reports_the_whole_suite(tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "smoke", "--out", str(out), "--quiet",
                 "--only", "method=mezo-sgd,linear-probe", "seed=1"]) == 0
    finished = {p.parent.relative_to(out / "runs") for p in (out / "runs").rglob("results.json")}
    model = "fixture:tiny-llama-full"
    suite = load_suite("smoke")
    lrs = suite.grid["lr"]
    assert finished == {Path(model, "fixture:sentiment", "linear-probe", "seed1"),
                        *(Path(model, "fixture:sentiment", "mezo-sgd", f"lr{lr:g}-eps0.01", "seed1") for lr in lrs)}
    assert not (out / "gradient_quality.json").exists()  # the one-batch sections belong to the full suite
    table = (out / "summary.md").read_text()
    assert f"Runs finished: {len(lrs)} of {len(suite.runs())} (**partial**" in table


@pytest.mark.parametrize("only,message", [
    (["model=tiny"], "has no such model (it has fixture:tiny-llama, fixture:tiny-llama-full)"),
    (["seed=7"], "has no such seed (it has 0, 1)"),
    (["method=mezzo-sgd"], "has no such method"),
    (["colour=red"], "unknown key 'colour'"),
    (["seed"], "expected key=value"),
    (["seed=0", "seed=1"], "seed given twice"),
])
def test_bad_only_selections_are_one_line_errors(tmp_path, capsys, only, message):
    assert main(["bench", "smoke", "--out", str(tmp_path / "o"), "--quiet", "--only", *only]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


def test_remaining_compute_prices_each_run_by_its_own_kind(tmp_path):
    from zoo.bench.remaining import describe, remaining

    specs = load_suite("smoke").runs()
    sgd = [s for s in specs if s.estimator == "mezo-sgd"]
    lezo = [s for s in specs if s.estimator == "lezo"]
    assert len(sgd) == len(lezo) == 4  # 2 lrs x 2 seeds

    def finish(spec, seconds):
        spec.folder(tmp_path).mkdir(parents=True)
        (spec.folder(tmp_path) / "results.json").write_text(json.dumps({"wall_time_s": seconds}))

    assert remaining(specs, tmp_path).unpriced == len(specs)
    for spec, seconds in zip(sgd[:3], (10.0, 30.0, 20.0)):
        finish(spec, seconds)
    finish(lezo[0], 100.0)
    r = remaining(specs, tmp_path)
    # mezo-sgd's last run at its own median (20); every other method at the (model, task) median
    # of all four finished runs (25); no run is unpriced: they share one model and task
    others = len(specs) - 4 - 1
    assert r.spent_s == 160.0 and r.left_s == 20.0 + 3 * 100.0 + (others - 3) * 25.0 and r.unpriced == 0
    assert "took 0.0 h" in describe(r) and "runs of a model and task" not in describe(r)


def test_a_finished_suite_states_its_wall_time_per_model(tmp_path):
    from zoo.bench.remaining import describe_spent, remaining
    from zoo.bench.suite import model_label

    suite = load_suite("smoke")
    second = {**suite.models[0], "tuning": "head", "mode": "head"}  # another label, other run folders
    specs = suite.runs() + [dataclasses.replace(s, model=second) for s in suite.runs()[:2]]
    n = len(suite.runs())  # the first model's runs: an hour and a quarter each; the second's a quarter
    for i, spec in enumerate(specs):
        spec.folder(tmp_path).mkdir(parents=True)
        (spec.folder(tmp_path) / "results.json").write_text(json.dumps({"wall_time_s": 3600.0 * (i < n) + 900.0}))
    r = remaining(specs, tmp_path)
    first, other = model_label(suite.models[0]), model_label(second)
    assert r.spent_by_model == {first: n * 4500.0, other: 2 * 900.0} and r.left_s == 0.0
    assert r.spent_s == n * 4500.0 + 1800.0
    text = describe_spent(r)
    assert f"sum to {r.spent_s / 3600:.2f} h ({first} {n * 1.25:.2f} h, {other} 0.50 h)" in text


def test_memory_rows_are_medians_of_fresh_processes(tmp_path):
    from zoo.bench.memory import median_of_runs
    from zoo.bench.report import _memory_section

    peaks, calls = iter([30, 10, 20]), []

    def probe(spec, methods):
        calls.append(methods)
        p = next(peaks)
        return [{"method": methods[0], "base_bytes": 5 + p, "peak_bytes": 100 + p, "measure": "peak RSS"}]

    row = median_of_runs(probe, {}, "mezo-sgd", 3)
    assert (row["base_bytes"], row["peak_bytes"], row["peak_bytes_runs"]) == (25, 120, [130, 110, 120])
    assert calls == [["mezo-sgd"]] * 3
    with pytest.raises(ValueError, match="repeats"):
        median_of_runs(probe, {}, "mezo-sgd", 0)
    mib = 2**20
    rows = [{"method": m, "base_bytes": 100 * mib, "peak_bytes": p * mib, "peak_bytes_runs": [p * mib, (p + 9) * mib, (p - 1) * mib],
             "measure": "peak RSS (VmHWM)"} for m, p in (("inference", 110), ("mezo-sgd", 111))]
    meta = {"model": {"model": "m", "tuning": "full"}, "task": "sst2", "batch": 16, "device": "cpu", "repeats": 3}
    (tmp_path / "memory.json").write_text(json.dumps({"meta": meta, "rows": rows}))
    text = "\n".join(_memory_section(tmp_path))
    assert "in 3 fresh processes, and the table shows the medians" in text
    assert "| mezo-sgd | 100 | 111 | 1.009 | 11.0 | 1.10 | 111, 120, 110 |" in text


def test_report_names_the_noise_stream_of_the_zo_runs(smoke, tmp_path):
    """A seed means other directions on another stream, so the table says which one each ZO run drew."""
    zo = [p for p in (smoke / "runs").rglob("results.json")
          if json.loads(p.read_text())["config"].get("estimator") in zoo.available()]
    streams = {json.loads(p.read_text())["noise_stream"] for p in zo}
    assert len(streams) == 1 and streams <= {"philox", "torch-generator"}
    table = (smoke / "summary.md").read_text()
    assert f"Noise streams of the ZO runs: {streams.pop()} ({len(zo)} runs)." in table
    table = _report_without(smoke, tmp_path, "noise_stream")
    assert f"({len(zo) - 1} runs), not recorded (1 run). A run whose stream is not recorded" in table


def test_the_report_says_which_rows_time_a_head_alone():
    from types import SimpleNamespace

    from zoo.bench.report import _head_only_note

    suite = SimpleNamespace(models=[{"model": "enc", "mode": "head", "tuning": "head"},
                                    {"model": "enc", "mode": "head", "tuning": "full"},
                                    {"model": "lm", "mode": "prompt", "tuning": "full"}])
    note = _head_only_note(suite)
    assert "The enc (head) rows" in note and "(full)" not in note
    assert _head_only_note(SimpleNamespace(models=suite.models[1:])) == ""


def _small_suite(tmp_path, **over):
    return _suite_file(tmp_path, **{**dict(estimators=["mezo-sgd", "n-spsa"], first_order={"adam": {"lr": [0.01]}},
                                           baselines=["zero-shot"], seeds=[0, 1], grid={"lr": [0.01], "eps": [0.01]},
                                           forward_budget=8, gradient={}, memory={}, cost={}), **over})


def _finished(out, suite_path):
    return [json.loads((s.folder(out) / "results.json").read_text()) for s in load_suite(str(suite_path)).runs()
            if (s.folder(out) / "results.json").exists()]


def test_jobs_run_the_suite_beside_a_worker_and_report_once(tmp_path):
    path = _small_suite(tmp_path)
    alone, jobs = tmp_path / "alone", tmp_path / "jobs"
    assert main(["bench", str(path), "--out", str(alone), "--quiet"]) == 0
    assert main(["bench", str(path), "--out", str(jobs), "--quiet", "--jobs", "2"]) == 0
    runs = load_suite(str(path)).runs()
    assert len(_finished(jobs, path)) == len(runs) == 6
    for a, b in zip(_finished(alone, path), _finished(jobs, path)):
        same = {k: v for k, v in a["config"].items() if k not in ("model", "task")}  # fixtures live under each out
        assert same == {k: b["config"][k] for k in same}
        assert a["history"]["loss"] == pytest.approx(b["history"]["loss"], rel=1e-5)
    assert f"Runs finished: {len(runs)} of {len(runs)}." in (jobs / "summary.md").read_text()


def test_runs_finished_without_test_curves_get_them_rebuilt_where_they_can_be(tmp_path):
    before, curved = _small_suite(tmp_path / "a", test_curves=False), _small_suite(tmp_path / "b")
    out, reference = tmp_path / "out", tmp_path / "reference"
    assert main(["bench", str(before), "--out", str(out), "--quiet"]) == 0
    assert not any("test_accuracy" in e for r in _finished(out, curved) for e in r["history"]["evals"])
    assert "test_curves.png" not in (out / "summary.md").read_text() and not (out / "test_curves.png").exists()
    assert main(["bench", str(curved), "--out", str(out), "--quiet"]) == 0
    assert main(["bench", str(curved), "--out", str(reference), "--quiet"]) == 0  # scored during its runs
    for r, ref in zip(_finished(out, curved), _finished(reference, curved)):
        got = [(e["step"], e.get("test_accuracy"), e.get("test_loss")) for e in r["history"]["evals"]]
        if r["config"]["estimator"] == "adam":  # first-order: no logged losses to replay
            assert "test_curve" not in r and all(acc is None for _, acc, _ in got)
        else:
            assert r["test_curve"]["source"] == "replayed from the logged losses"
            assert got == [(e["step"], e["test_accuracy"], e["test_loss"]) for e in ref["history"]["evals"]]
    table = (out / "summary.md").read_text()
    assert "](test_curves.png)" in table and (out / "test_curves.png").exists()
    assert "keep their final point only (the table): adam (" in table and "Not rebuilt yet" not in table


def test_a_worker_trains_runs_only_and_leaves_the_report_to_its_parent(tmp_path):
    path, out = _small_suite(tmp_path), tmp_path / "out"
    assert main(["bench", str(path), "--out", str(out), "--quiet", "--worker"]) == 0
    assert len(_finished(out, path)) == 6
    assert not (out / "summary.md").exists() and not (out / "suite.json").exists()
    assert not list(out.glob("runs/*/*/zero-shot"))  # baselines are the parent's


def test_a_failed_worker_is_a_one_line_error_after_the_parent_ran_what_it_could(tmp_path, monkeypatch, capsys):
    from zoo.bench import workers

    started = []

    class Failing:
        def __init__(self, bench_args, count, threads):
            started.append((bench_args, count, threads))

        def wait(self):
            return ["worker 1 exited 2: zoo bench: error: boom"]

        def stop(self):
            raise AssertionError("the parent did not fail")

    monkeypatch.setattr(workers, "Workers", Failing)
    threads = torch.get_num_threads()
    path, out = _small_suite(tmp_path), tmp_path / "out"
    assert main(["bench", str(path), "--out", str(out), "--quiet", "--jobs", "3", "--only", "seed=1"]) == 2
    assert torch.get_num_threads() == threads  # the parent's share of the cores ends with the suite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "worker 1 exited 2" in err[0] and "boom" in err[0]
    assert started == [([str(path), "--out", str(out), "--only", "seed=1"], 2, max(1, threads // 3))]
    assert len(_finished(out, path)) == 3  # the seed-1 runs, all by the parent since the fake worker ran none
    assert main(["bench", str(path), "--out", str(out), "--jobs", "0"]) == 2


def test_the_parameter_efficient_tunings_join_a_suites_model_entries(tmp_path):
    """tt-adapter, prompt and sparse-delta (with its options) run as model entries, in their own folders."""
    models = [{"model": "fixture:tiny-llama", "mode": "prompt", "tuning": t} for t in ("tt-adapter", "prompt")]
    models.append({"model": "fixture:tiny-llama", "mode": "prompt", "tuning": "sparse-delta",
                   "tuning_options": {"density": 0.05, "regrowth": "probe", "every": 2}})
    path = _small_suite(tmp_path, models=models, estimators=["adazeta"], baselines=[], seeds=[0])
    assert main(["bench", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    done = _finished(tmp_path / "out", path)
    assert len(done) == 6 and all(r["model_calls"] == r["forward_passes"] for r in done)
    sparse = [r for r in done if r["config"]["tuning"] == "sparse-delta"]
    assert {r["config"]["tuning_options"]["regrowth"] for r in sparse} == {"probe"}
    from zoo.bench.suite import model_label

    assert model_label(models[2]) == "fixture:tiny-llama-sparse-delta-density0.05-every2-regrowthprobe"
