"""Faults in a run folder: Ctrl-C at any moment, damaged or altered files, a full disk, two processes.

Each run resumes bit for bit where nothing is lost, or stops with one line naming the file. An
"uninterrupted run" is the reference: the same config trained straight through in another folder.
"""

import json
import logging
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import bits_equal
from test_finetune import _setup
from zoo.files import RunFileError
from zoo.finetune.loop import finetune

SAME = ("loss", "step_losses", "forward_passes", "steps", "evals", "model_calls")


def _straight(tmp_path, **cfg):
    c, built, splits = _setup(tmp_path / "straight", **cfg)
    r = finetune(c, built, splits, tmp_path / "straight" / "run", progress=False)
    return r, [p.detach().clone() for p in built.model.parameters()]


def _assert_same_run(resumed, fresh_model, straight, final):
    assert bits_equal(final, fresh_model.parameters())
    for key in SAME:
        assert resumed["history"].get(key) == straight["history"].get(key), key
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["forward_passes"] == straight["forward_passes"]
    assert resumed.get("weights_fingerprint") == straight.get("weights_fingerprint")


def _signal_at_call(model, calls_before, count=1):
    """SIGINT to this process from inside the model's forward number `calls_before + 1` (inside a closure),
    `count` times (2: a user who presses Ctrl-C twice)."""
    seen = [0]

    def hook(*_):
        seen[0] += 1
        if seen[0] == calls_before + 1:
            for _ in range(count):
                os.kill(os.getpid(), signal.SIGINT)

    return model.register_forward_pre_hook(hook)


# step 5's forwards: dev at 0 (1 call), steps 1-4 (8), dev at 4 (1), so calls 11 and 12 are step 5's closure
STEP5_SECOND_FORWARD = 11


@pytest.mark.parametrize("perturbation", ["inplace", "exact"])
def test_sigint_inside_the_closure_finishes_the_step_then_resumes_bit_exactly(tmp_path, perturbation):
    opts = {"estimator_options": {"perturbation": perturbation}}
    straight, final = _straight(tmp_path, **opts)
    cfg, built, splits = _setup(tmp_path / "b", **opts)
    _signal_at_call(built.model, STEP5_SECOND_FORWARD)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, built, splits, tmp_path / "b" / "run", progress=False)
    saved = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 5 and saved["optimizer"]["zo"]["step"] == 5  # the interrupted step was finished
    assert saved["optimizer"]["zo"]["forward_passes"] == 10
    cfg, fresh, splits = _setup(tmp_path / "b", **opts)
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    _assert_same_run(resumed, fresh.model, straight, final)


def test_a_second_sigint_stops_at_once_saves_nothing_from_the_step_and_the_run_still_resumes(tmp_path, caplog):
    straight, final = _straight(tmp_path)
    cfg, built, splits = _setup(tmp_path / "b")
    _signal_at_call(built.model, STEP5_SECOND_FORWARD, count=2)
    with caplog.at_level(logging.WARNING, logger="zoo"), pytest.raises(KeyboardInterrupt):
        finetune(cfg, built, splits, tmp_path / "b" / "run", progress=False)
    assert any("stopped inside step 5" in r.message for r in caplog.records)
    saved = torch.load(tmp_path / "b" / "run" / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 3  # the last checkpoint, not the rounded weights of the broken step
    cfg, fresh, splits = _setup(tmp_path / "b")
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    _assert_same_run(resumed, fresh.model, straight, final)


def test_sigint_during_a_dev_evaluation_resumes_with_that_evaluation(tmp_path):
    straight, final = _straight(tmp_path)
    cfg, built, splits = _setup(tmp_path / "b")
    _signal_at_call(built.model, 9)  # call 10: the dev evaluation after step 4
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, built, splits, tmp_path / "b" / "run", progress=False)
    cfg, fresh, splits = _setup(tmp_path / "b")
    resumed = finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False)
    _assert_same_run(resumed, fresh.model, straight, final)


def _stopped_run(tmp_path, monkeypatch, at=6):
    from conftest import stop_at

    cfg, built, splits = _setup(tmp_path / "b")
    run = tmp_path / "b" / "run"
    stop_at(monkeypatch, at, cfg, built, splits, run)
    return run


def _resume(tmp_path):
    cfg, fresh, splits = _setup(tmp_path / "b")
    return finetune(cfg, fresh, splits, tmp_path / "b" / "run", progress=False), fresh


def test_a_checkpoint_with_one_weight_altered_is_refused(tmp_path, monkeypatch, caplog):
    straight, final = _straight(tmp_path)
    run = _stopped_run(tmp_path, monkeypatch)
    payload = torch.load(run / "checkpoint.pt", weights_only=False)
    name = next(iter(payload["params"]))
    payload["params"][name] = payload["params"][name].clone()
    payload["params"][name].view(-1)[0] += 1e-3
    torch.save(payload, run / "checkpoint.pt")  # a valid torch file
    trajectory = (run / "trajectory.json").read_bytes()
    (run / "trajectory.json").unlink()
    with pytest.raises(RunFileError, match=r"checkpoint.pt: damaged: its weights differ .*start the run over"):
        _resume(tmp_path)
    (run / "trajectory.json").write_bytes(trajectory)  # with the loss log the run goes on from it
    with caplog.at_level(logging.WARNING, logger="zoo"):
        resumed, fresh = _resume(tmp_path)
    assert any("fingerprint" in r.message and "trajectory.json" in r.message for r in caplog.records)
    _assert_same_run(resumed, fresh.model, straight, final)


def _damage(path, how):
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(os.urandom(len(data)))
    elif how == "bit-flip":
        b = bytearray(data)
        b[len(b) // 2] ^= 0x10
        path.write_bytes(bytes(b))
    elif how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "list":
        path.write_text("[1, 2, 3]")
    elif how == "latin-1":
        path.write_bytes(b'{"config": "\xc6"}')


@pytest.mark.parametrize("damaged,how", [
    *(("checkpoint.pt", how) for how in ("empty", "random", "bit-flip", "truncated")),
    *(("trajectory.json", how) for how in ("truncated", "list", "latin-1", "empty")),
])
def test_a_damaged_source_is_named_and_the_other_takes_over(tmp_path, monkeypatch, damaged, how, caplog):
    """A damaged checkpoint.pt gives way to the loss log, a damaged trajectory.json to the checkpoint."""
    straight, final = _straight(tmp_path)
    run = _stopped_run(tmp_path, monkeypatch)
    _damage(run / damaged, how)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        resumed, fresh = _resume(tmp_path)
    assert any(str(run / damaged) in r.message for r in caplog.records)
    _assert_same_run(resumed, fresh.model, straight, final)


@pytest.mark.parametrize("how", ["empty", "random", "truncated"])
def test_a_damaged_checkpoint_without_a_log_is_one_line_naming_it(tmp_path, monkeypatch, how, capsys):
    run = _stopped_run(tmp_path, monkeypatch)
    (run / "trajectory.json").unlink()
    _damage(run / "checkpoint.pt", how)
    with pytest.raises(RunFileError) as e:
        _resume(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{run / 'checkpoint.pt'}: damaged") and "\n" not in msg and "delete it" in msg


@pytest.mark.parametrize("how", ["truncated", "list", "latin-1"])
def test_a_damaged_loss_log_alone_is_one_line_naming_it(tmp_path, monkeypatch, how):
    run = _stopped_run(tmp_path, monkeypatch)
    (run / "checkpoint.pt").unlink()
    _damage(run / "trajectory.json", how)
    with pytest.raises(RunFileError) as e:
        _resume(tmp_path)
    assert str(e.value).startswith(f"{run / 'trajectory.json'}: damaged") and "\n" not in str(e.value)


def test_a_log_whose_step_runs_past_its_losses_is_refused(tmp_path, monkeypatch):
    run = _stopped_run(tmp_path, monkeypatch)
    (run / "checkpoint.pt").unlink()
    log = json.loads((run / "trajectory.json").read_text())
    log["step"] = 8  # 6 steps of losses logged
    (run / "trajectory.json").write_text(json.dumps(log))
    with pytest.raises(RunFileError, match=r"trajectory.json: inconsistent: its step is 8 but its history holds 6"):
        _resume(tmp_path)
    assert not (run / "results.json").exists()


def test_a_kill_after_results_json_loses_no_curve(tmp_path):
    cfg, built, splits = _setup(tmp_path / "a")
    run = tmp_path / "a" / "run"
    finetune(cfg, built, splits, run, progress=False)
    (run / "curve.png").unlink()  # what a kill between the two writes of an older zoo left
    cfg, fresh, splits = _setup(tmp_path / "a")
    finetune(cfg, fresh, splits, run, progress=False)
    assert (run / "curve.png").stat().st_size > 1000


@pytest.mark.parametrize("how", ["truncated", "list", "empty"])
def test_a_truncated_results_json_is_rebuilt_from_the_checkpoint(tmp_path, how, caplog):
    straight, final = _straight(tmp_path)
    run = tmp_path / "straight" / "run"
    reference = json.loads((run / "results.json").read_text())
    _damage(run / "results.json", how)
    cfg, fresh, splits = _setup(tmp_path / "straight")
    with caplog.at_level(logging.WARNING, logger="zoo"):
        rebuilt = finetune(cfg, fresh, splits, run, progress=False)
    assert any("results.json" in r.message for r in caplog.records)
    _assert_same_run(rebuilt, fresh.model, reference, final)
    assert json.loads((run / "results.json").read_text())["metrics"] == reference["metrics"]


def test_a_truncated_results_json_that_alone_held_the_run_is_named(tmp_path):
    _straight(tmp_path)
    run = tmp_path / "straight" / "run"
    (run / "checkpoint.pt").unlink()
    _damage(run / "results.json", "truncated")
    cfg, fresh, splits = _setup(tmp_path / "straight")
    with pytest.raises(RunFileError, match=r"results.json: damaged: not valid JSON .*delete it to run again"):
        finetune(cfg, fresh, splits, run, progress=False)


def test_zoo_eval_of_a_run_with_a_damaged_results_json_names_it(tmp_path, capsys):
    from zoo.cli import main

    from conftest import tiny_model_folder

    folder, data = tiny_model_folder(tmp_path)
    out = tmp_path / "run"
    args = ["--model", str(folder), "--task", str(data), "--k", "4", "--quiet"]
    assert main(["finetune", *args, "--steps", "2", "--batch-size", "4", "--lr", "0.01", "--out", str(out)]) == 0
    (out / "checkpoint.pt").unlink()
    _damage(out / "results.json", "truncated")
    capsys.readouterr()
    assert main(["eval", *args, "--run", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out / 'results.json'}: damaged" in err


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """torch's serializer reports a full disk as a RuntimeError without errno; the writer names the file
    and 'no space left', and removes its partial temporary file."""
    import shutil

    import zoo.files

    run = _stopped_run(tmp_path, monkeypatch, at=3)
    before = (run / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def filling(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as h:
            h.truncate(4096)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", filling)
    monkeypatch.setattr(zoo.files.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    cfg, fresh, splits = _setup(tmp_path / "b")
    with pytest.raises(RunFileError) as e:
        finetune(cfg, fresh, splits, run, progress=False)
    assert str(e.value) == f"{run / 'checkpoint.pt'}: could not write it: no space left on device; the previous " \
                           "checkpoint.pt is kept"
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not list(run.glob(".*.tmp"))


def test_a_second_process_on_the_same_out_stops_at_once(tmp_path):
    from zoo.finetune.lock import LOCK, FolderInUse

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = tmp_path / "b" / "run"
        run.mkdir(parents=True)
        (run / LOCK).write_text(str(other.pid))
        cfg, built, splits = _setup(tmp_path / "b")
        with pytest.raises(FolderInUse, match=rf"{run} is in use by another zoo process \(pid {other.pid}\)"):
            finetune(cfg, built, splits, run, progress=False)
        assert not (run / "checkpoint.pt").exists()
    finally:
        other.kill()
        other.wait()
    # the holder died: its lock does not block the rerun, and the run releases its own at the end
    finetune(cfg, built, splits, run, progress=False)
    assert (run / "results.json").exists() and not (run / LOCK).exists()


def test_progress_off_a_terminal_is_plain_lines(capsys, monkeypatch):
    import zoo.progress as progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    bar = progress.PlainProgress(range(5), desc="steps", every_s=0.0)
    for _ in bar:
        bar.set_postfix(loss="0.5")
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "\r" not in err and "\x1b" not in err and len(lines) >= 5
    assert lines[-1].startswith("steps: 5/5 (100%)") and "loss=0.5" in lines[-1]
    assert progress.progress(range(3), enabled=True).__class__ is progress.PlainProgress  # pytest's stderr is no tty


def test_sigkill_inside_a_checkpoint_write_then_the_same_command_finishes_bit_identically(tmp_path):
    """One trial of benchmarks/crash_test.py (docs/reliability.md has the full 32): `zoo finetune` in a
    subprocess, SIGKILLed the moment a temporary file of a checkpoint or log write appears, then rerun."""
    from conftest import benchmark_script

    crash = benchmark_script("crash_test")
    from zoo.bench.fixtures import resolve

    model, data = crash.model_folder(tmp_path), resolve("fixture:sentiment", tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "reference"
    subprocess.run(crash.command(model, data, ref, 6), env=env, check=True, capture_output=True)
    reference = crash.comparable(json.loads((ref / "results.json").read_text()))
    out = tmp_path / "killed"
    row = crash.trial(crash.command(model, data, out, 6), out, reference, crash.final_weights(ref), None, env,
                      at_write=3)
    assert row["killed_in_write"] and not row["finished_before_kill"]
    assert row["rerun_exit"] == 0 and row["results_identical"] and row["weights_identical"], row


def test_two_identical_commands_on_one_out_the_second_exits_at_once_in_one_line(tmp_path, capsys):
    import time

    from conftest import tiny_model_folder
    from zoo.cli import main
    from zoo.finetune.lock import LOCK

    folder, data = tiny_model_folder(tmp_path)
    out = tmp_path / "run"
    argv = ["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--steps", "100000",
            "--batch-size", "4", "--lr", "0.01", "--quiet", "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "zoo", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK).exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        capsys.readouterr()
        t0 = time.monotonic()
        assert main(argv) == 2
        took = time.monotonic() - t0
        err = capsys.readouterr().err.strip()
        assert err == f"zoo finetune: error: {out} is in use by another zoo process (pid {first.pid}); wait for it " \
                      "to finish, or use another --out"
        assert took < 5  # no model was loaded
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


def test_quiet_and_a_log_file_hide_transformers_loading_bar(monkeypatch):
    from transformers.utils import logging as hf_logging

    from zoo.cli import main

    for argv in (["eval", "--quiet", "--task", "imdb"], ["eval", "--task", "imdb"]):  # pytest's stderr: no tty
        hf_logging.enable_progress_bar()
        assert main(argv) == 2  # fails fast on the task, after the flag is read
        assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()


def test_metrics_jsonl_follows_the_run_and_a_resumed_run_rewrites_it_without_repeats(tmp_path, monkeypatch):
    import json

    from conftest import tiny_model_folder
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    args = ["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "6",
            "--batch-size", "4", "--lr", "0.01", "--eval-every", "3", "--checkpoint-every", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["event"] == "step"]
    evals = [x for x in lines if x["event"] == "eval"]
    r = json.loads((tmp_path / "a" / "results.json").read_text())
    assert [x["step"] for x in steps] == list(range(1, 7)) and [x["loss"] for x in steps] == r["history"]["loss"]
    assert [x["step"] for x in evals] == [0, 3, 6] and all("dev_accuracy" in x and "lr" not in x for x in evals)
    assert all(x["lr"] == 0.01 for x in steps)
    # an interrupted run: the resumed session rewrites the file from the checkpoint's history first
    (tmp_path / "b").mkdir()
    with (tmp_path / "b" / "metrics.jsonl").open("w") as f:
        f.write('{"event": "step", "step": 99, "forward_passes": 0, "loss": 0}\n')  # past the checkpoint
    import zoo.finetune.loop as loop

    calls = [0]
    real = loop.MetricsLog.step

    def stop_after_five(self, history, lr):
        real(self, history, lr)
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.MetricsLog, "step", stop_after_five)
    assert main([*args, "--out", str(tmp_path / "b")]) != 0
    monkeypatch.setattr(loop.MetricsLog, "step", real)
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    again = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in again if x["event"] == "step"] == list(range(1, 7))
    assert [x["loss"] for x in again if x["event"] == "step"] == r["history"]["loss"]


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from conftest import tiny_model_folder
    from zoo.cli import main

    folder, data = tiny_model_folder(tmp_path)
    assert main(["finetune", "--model", str(folder), "--task", str(data), "--k", "4", "--quiet", "--steps", "2",
                 "--batch-size", "4", "--lr", "0.01", "--tensorboard", "--out", str(tmp_path / "r")]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2] and "dev/accuracy" in events.Tags()["scalars"]
