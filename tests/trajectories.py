"""Trajectories of the two-point estimators, recorded with the code before query plans existed.

test_plans.py checks that today's estimators retrace those runs bit for bit (the same losses at every
step, the same weight and optimizer-state bits at the end). Float32 matmuls, Adam's sqrt and SubZero's
QR round differently on different CPUs, so a recording holds on the CPU that made it: `reference()`
runs zoo as of PRE_PLANS (1ac636d, before zoo.estimators.plans), taken from the repository's history,
on this machine. Where the history is not there (a shallow clone), the committed
tests/data/two_point_trajectories.json stands in; `python tests/trajectories.py` rewrites it with
today's code and this machine's signature.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import zoo  # noqa: E402
from conftest import lm_batch, tiny_llama  # noqa: E402

PATH = Path(__file__).parent / "data" / "two_point_trajectories.json"
NAMES = ("mezo-sgd", "n-spsa", "mezo-adam", "sparse-mezo", "lezo", "subzero")
HYPER = {"n-spsa": {"n": 3}, "sparse-mezo": {"sparsity": 0.5}, "lezo": {"active_fraction": 0.5},
         "subzero": {"rank": 4, "refresh": 2}}
STEPS = 5
PRE_PLANS = "1ac636d"
ROOT = Path(__file__).resolve().parent.parent


def machine_signature() -> str:
    """What float32 rounding depends on here: the CPU model and its vector extensions."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    vector = sorted(f for f in flags if f.startswith(("avx", "fma", "amx", "sse4")))
    return f"{platform.machine()} {model} {' '.join(vector)}"


def reference() -> tuple[dict, str]:
    """(the pre-plans recordings valid on this machine, where they come from)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", PRE_PLANS, "zoo"], capture_output=True)
        if archive.returncode == 0:
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            out = Path(tmp) / "recorded.json"
            env = {**os.environ, "PYTHONPATH": tmp}
            subprocess.run([sys.executable, __file__, "--out", str(out)], env=env, check=True,
                           capture_output=True, cwd=tmp)
            return json.loads(out.read_text()), f"zoo at {PRE_PLANS}, run here"
    saved = json.loads(PATH.read_text())
    recorded_on = saved.pop("_machine", None)
    return saved, f"the committed file (recorded on {recorded_on}; this machine: {machine_signature()})"


def cases():
    """(label, estimator, dtype, options) of every recorded run."""
    for name in NAMES:
        for perturbation in ("inplace", "exact"):
            for backend in ("cpu", "torch"):
                yield f"{name}/{perturbation}/{backend}/float32", name, torch.float32, {
                    "perturbation": perturbation, "backend": backend, "weight_decay": 0.01, **HYPER.get(name, {})}
        yield f"{name}/exact/cpu/bfloat16", name, torch.bfloat16, {
            "perturbation": "exact", "backend": "cpu", **HYPER.get(name, {})}


def tensor_digest(tensors) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        t = t.detach().contiguous().cpu().reshape(-1)
        h.update(f"{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(memoryview(t.view(torch.uint8).numpy()))
    return h.hexdigest()


def record(name, dtype, options, steps=STEPS):
    """Runs `steps` steps and returns every closure loss (as repr) and digests of the end state."""
    model = tiny_llama(dtype)
    batches = [lm_batch(seed=t) for t in range(steps)]
    opt = zoo.get(name, model, lr=1e-2 if name == "mezo-adam" else 1e-3, eps=1e-3, seed=7, **options)
    losses = []
    for t in range(steps):
        step_losses = []

        def closure():
            loss = model(**batches[t]).loss
            step_losses.append(repr(float(loss)))
            return loss

        opt.step(closure)
        losses.append(step_losses)
    state = [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
    return {"losses": losses, "weights": tensor_digest(model.parameters()), "state": tensor_digest(state),
            "forward_passes": opt.zo_state["forward_passes"]}


def replayed(name, dtype, options, losses):
    """The end state of the run whose closure returned `losses` (as recorded), with no forward pass:
    the estimator's own arithmetic, whatever this CPU's matmuls round to."""
    model = tiny_llama(dtype)
    opt = zoo.get(name, model, lr=1e-2 if name == "mezo-adam" else 1e-3, eps=1e-3, seed=7, **options)
    for step_losses in losses:
        opt.replay([float(v) for v in step_losses])
    state = [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
    return {"losses": losses, "weights": tensor_digest(model.parameters()), "state": tensor_digest(state),
            "forward_passes": opt.zo_state["forward_passes"]}


if __name__ == "__main__":
    target = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else PATH
    out = {label: record(name, dtype, options) for label, name, dtype, options in cases()}
    if target == PATH:
        out["_machine"] = machine_signature()
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(out)} trajectories to {target}")
