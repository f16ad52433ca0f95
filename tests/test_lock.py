"""Run-folder locks: one process per run, a dead process's lock taken over, and the bench skipping held runs."""

import os
import subprocess
import sys

import pytest

from zoo.finetune.lock import LOCK, claim, claimed, release


@pytest.fixture
def other_process():
    """A live process that is not this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_free_folder_is_claimed_once_and_released(tmp_path):
    assert claim(tmp_path / "run")
    assert (tmp_path / "run" / LOCK).read_text() == str(os.getpid())
    assert claim(tmp_path / "run")  # this process already holds it
    release(tmp_path / "run")
    assert not (tmp_path / "run" / LOCK).exists()
    assert [p.name for p in (tmp_path / "run").iterdir()] == []  # no private lock file left behind


def test_a_live_process_keeps_its_folder_and_a_dead_one_loses_it(tmp_path, other_process):
    (tmp_path / LOCK).write_text(str(other_process.pid))
    assert not claim(tmp_path)
    release(tmp_path)  # not ours: it stays
    assert (tmp_path / LOCK).read_text() == str(other_process.pid)
    other_process.kill()
    other_process.wait()
    assert claim(tmp_path)
    assert (tmp_path / LOCK).read_text() == str(os.getpid())


def test_an_unreadable_lock_is_taken_over(tmp_path):
    (tmp_path / LOCK).write_text("not a pid")
    with claimed(tmp_path) as mine:
        assert mine and (tmp_path / LOCK).read_text() == str(os.getpid())
    assert not (tmp_path / LOCK).exists()


def test_bench_runs_skip_a_run_another_process_holds(tmp_path, monkeypatch, other_process):
    from zoo.bench import load_suite, runner

    suite = load_suite("smoke")
    for section in ("_gradient_quality", "_memory", "_step_cost"):
        monkeypatch.setattr(runner, section, lambda *a, **k: None)
    monkeypatch.setattr(runner, "_baseline", lambda *a, **k: None)
    ran = []

    def fake_finetune(cfg, out, overrides, progress, test_curve):
        ran.append(out)
        return {"model_calls": None, "history": {"evals": [{"step": 0, "test_accuracy": 0.5}]}}

    monkeypatch.setattr(runner, "run_finetune", fake_finetune)
    specs = suite.runs()
    held = specs[1].folder(tmp_path)
    held.mkdir(parents=True)
    (held / LOCK).write_text(str(other_process.pid))
    assert runner.run_suite(suite, tmp_path, progress=False) == []
    assert ran == [str(s.folder(tmp_path)) for s in specs if s.folder(tmp_path) != held]
    assert list(tmp_path.glob(f"**/{LOCK}")) == [held / LOCK]  # ours released, the other's kept
