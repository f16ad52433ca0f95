"""Trajectories of the two-point estimators, recorded with the code before query plans existed.

`python tests/trajectories.py` rewrites tests/data/two_point_trajectories.json. It was run once, on
main at 1ac636d (before zoo.estimators.plans), and the file is committed: test_plans.py checks that
today's estimators retrace those runs bit for bit (the same losses at every step, the same weight
and optimizer-state bits at the end). Rerun it only to record a deliberate change of trajectory.
"""

from __future__ import annotations

import hashlib
import json
import sys
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


if __name__ == "__main__":
    out = {label: record(name, dtype, options) for label, name, dtype, options in cases()}
    PATH.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(out)} trajectories to {PATH}")
