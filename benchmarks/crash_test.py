"""SIGKILL `zoo finetune` at random moments, rerun it, and check that it finishes as if never killed.

    python benchmarks/crash_test.py --trials 24 --write-trials 8 --json docs/reliability_crash.json

A reference run trains straight through. Each trial starts the same command in a fresh folder,
kills it (SIGKILL: no handler runs) once at a random moment between the run folder's creation and the
reference's end, or, for the "write" trials, inside the k-th write of a run file (k at random; the
kill lands while the temporary file of a checkpoint or loss-log write exists), then reruns the same
command to the end. A trial passes when the rerun exits 0 and its results.json
equals the reference's in everything but timings and machine facts (config, metrics, forward passes,
model calls, history of losses and evaluations, weights fingerprint), and its final checkpoint's
weights are bit-identical to the reference's.

With --disk-full (root, Linux): the run's folder is a tmpfs mount whose free space runs out at the
second checkpoint; the command must exit 2 with one line naming checkpoint.pt and "no space left",
keep the first checkpoint, and after the space is freed the same command must finish bit-identically.

The model is a random Llama (hidden 256, 4 layers, 3.4M parameters) with the bench fixtures' word
tokenizer, so that a checkpoint (14 MB) takes long enough to write for kills to land inside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TIMING = {"wall_time_s", "measured", "median_step_s", "peak_memory_bytes", "peak_memory_scope"}


def model_folder(root: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from zoo.bench.fixtures import _tokenizer

    folder = root / "model"
    if not folder.exists():
        cfg = LlamaConfig(vocab_size=64, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            LlamaForCausalLM(cfg).save_pretrained(folder)
        _tokenizer().save_pretrained(folder)
    return folder


def command(model: Path, data: str, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "zoo", "finetune", "--model", str(model), "--task", data, "--k", "8",
            "--steps", str(steps), "--batch-size", "8", "--lr", "1e-3", "--eps", "1e-3", "--eval-every", "5",
            "--checkpoint-every", "2", "--quiet", "--out", str(out)]


def comparable(results: dict) -> dict:
    r = {k: v for k, v in results.items() if k not in TIMING}
    r["history"] = {k: v for k, v in r["history"].items() if k != "step_seconds"}
    return r


def final_weights(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=False)["params"]


def same_weights(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)


def _writing(out: Path) -> bool:
    return any(out.glob(".*.tmp"))


def trial(cmd: list[str], out: Path, reference: dict, ref_weights: dict, kill_after: float | None,
          env: dict, at_write: int = 1) -> dict:
    """One kill, then the rerun. The kill lands `kill_after` seconds after the run folder appears (the
    process has imported torch and loaded the model by then), or, with `kill_after` None, inside the
    `at_write`-th write of a run file that the polling sees."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    started = None
    killed_in_write, writes, was_writing = False, 0, False
    while proc.poll() is None:
        if started is None and out.exists():
            started = time.monotonic()
        writing = started is not None and _writing(out)
        if writing and not was_writing:
            writes += 1
        was_writing = writing
        if kill_after is None and writing and writes == at_write:
            killed_in_write = True
            proc.send_signal(signal.SIGKILL)
            break
        if kill_after is not None and started is not None and time.monotonic() - started >= kill_after:
            killed_in_write = writing
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0002)
    proc.wait()
    killed_at = time.monotonic() - t0
    finished_before_kill = proc.returncode == 0
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    row = {"kill_after_s": round(killed_at, 3), "killed_in_write": killed_in_write,
           "finished_before_kill": finished_before_kill, "left_after_kill": left,
           "rerun_exit": rerun.returncode, "rerun_stderr": rerun.stderr.strip().splitlines()[-1:] if rerun.returncode else []}
    if rerun.returncode == 0:
        got = json.loads((out / "results.json").read_text())
        row["results_identical"] = comparable(got) == reference
        row["weights_identical"] = same_weights(final_weights(out), ref_weights)
    row["passed"] = bool(rerun.returncode == 0 and row.get("results_identical") and row.get("weights_identical"))
    return row


def disk_full(cmd_for, root: Path, reference: dict, ref_weights: dict, env: dict) -> dict:
    """A tmpfs sized so that the second checkpoint write runs out of space, then freed."""
    mount = root / "tmpfs"
    mount.mkdir()
    ckpt_bytes = sum(v.numel() * v.element_size() for v in ref_weights.values())
    size = int(ckpt_bytes * 8)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]).returncode:
        return {"skipped": "mount -t tmpfs failed (needs root)"}
    try:
        out = mount / "run"
        # leaves room for checkpoint.pt and its first replacement's start, not for two whole copies
        filler = mount / "filler"
        filler.write_bytes(b"\0" * int(size - 1.6 * ckpt_bytes))
        cmd = cmd_for(out)
        first = subprocess.run(cmd, env=env, capture_output=True, text=True)
        err = first.stderr.strip().splitlines()
        kept = (out / "checkpoint.pt").exists() and torch.load(out / "checkpoint.pt", weights_only=False)["step"] >= 2
        leftovers = sorted(p.name for p in out.glob(".*.tmp"))
        filler.unlink()
        second = subprocess.run(cmd, env=env, capture_output=True, text=True)
        row = {"tmpfs_bytes": size, "checkpoint_bytes": ckpt_bytes, "first_exit": first.returncode,
               "first_stderr_last_line": err[-1] if err else "", "previous_checkpoint_kept": kept,
               "temporary_files_left": leftovers, "rerun_exit": second.returncode}
        if second.returncode == 0:
            row["results_identical"] = comparable(json.loads((out / "results.json").read_text())) == reference
            row["weights_identical"] = same_weights(final_weights(out), ref_weights)
        row["passed"] = bool(first.returncode == 2 and "no space left" in row["first_stderr_last_line"]
                             and "checkpoint.pt" in row["first_stderr_last_line"] and kept and not leftovers
                             and row.get("results_identical") and row.get("weights_identical"))
        return row
    finally:
        subprocess.run(["umount", str(mount)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=24, help="kills at a random moment")
    ap.add_argument("--write-trials", type=int, default=8, help="kills inside a checkpoint or log write")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--disk-full", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zoo-crash-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    from zoo.bench.fixtures import resolve

    model, data = model_folder(root), resolve("fixture:sentiment", root)
    ref_out = root / "reference"
    t0 = time.monotonic()
    proc = subprocess.Popen(command(model, data, ref_out, args.steps), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    folder_at = None
    while proc.poll() is None:
        if folder_at is None and ref_out.exists():
            folder_at = time.monotonic() - t0
        time.sleep(0.001)
    if proc.returncode:
        raise SystemExit(f"the reference run failed (exit {proc.returncode})")
    ref_seconds = time.monotonic() - t0
    training_seconds = ref_seconds - (folder_at or 0.0)  # from the run folder's creation to the end
    reference, ref_weights = comparable(json.loads((ref_out / "results.json").read_text())), final_weights(ref_out)
    rng = random.Random(args.seed)
    rows = []
    for i in range(args.trials + args.write_trials):
        out = root / f"trial{i}"
        kill_after = rng.uniform(0.0, training_seconds) if i < args.trials else None
        at_write = rng.randint(1, 2 * (args.steps // 2))  # a checkpoint and a log write every 2 steps
        row = trial(command(model, data, out, args.steps), out, reference, ref_weights, kill_after, env, at_write)
        row["kind"] = "random moment" if i < args.trials else f"inside write {at_write}"
        rows.append(row)
        print(f"trial {i}: {row['kind']}, killed {row['kill_after_s']:.2f} s after the start"
              f"{' (inside a write)' if row['killed_in_write'] else ''}: {'pass' if row['passed'] else 'FAIL'}",
              flush=True)
        shutil.rmtree(out)
    summary = {"command": " ".join(["python", "benchmarks/crash_test.py", *sys.argv[1:]]),
               "reference_seconds": round(ref_seconds, 1), "training_seconds": round(training_seconds, 1),
               "trials": len(rows), "with_checkpoint_at_kill": sum("checkpoint.pt" in r["left_after_kill"] for r in rows),
               "passed": sum(r["passed"] for r in rows), "killed_in_write": sum(r["killed_in_write"] for r in rows),
               "finished_before_kill": sum(r["finished_before_kill"] for r in rows), "rows": rows}
    if args.disk_full:
        summary["disk_full"] = disk_full(lambda out: command(model, data, out, args.steps), root, reference,
                                         ref_weights, env)
        print("disk full:", json.dumps({k: v for k, v in summary["disk_full"].items()}), flush=True)
    from zoo.provenance import machine

    summary["measured"] = {**machine(), "date": time.strftime("%Y-%m-%d")}
    print(f"{summary['passed']} of {summary['trials']} trials passed ({summary['killed_in_write']} killed inside "
          "a write)")
    if args.json:
        from zoo.files import write_json

        write_json(args.json, summary, indent=1)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
