"""A `zoo finetune --out` folder as a source of trained weights, for `zoo eval --run` and `zoo theory --run`.

The weights come from checkpoint.pt where it is there. Otherwise a ZO run is
rebuilt from the losses it logged (results.json once finished, trajectory.json
before), by replaying them on freshly loaded weights: a clone of the repository
that holds only a run's results.json can still evaluate or measure its model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .loop import FIRST_ORDER, FinetuneConfig, build_optimizer, load_trainable_state
from .trajectory import TrajectoryLog


def logged_losses(run: Path) -> dict | None:
    """The run's loss log as a replayable payload: finished (results.json) or not (trajectory.json)."""
    results = run / "results.json"
    if results.exists():
        r = json.loads(results.read_text())
        if "step_losses" in r.get("history", {}) and "weights_fingerprint" in r:
            return {"config": r["config"], "step": len(r["history"]["step_losses"]),
                    "weights": r["weights_fingerprint"], "history": r["history"],
                    "noise_stream": r.get("noise_stream")}
    log = run / "trajectory.json"
    return json.loads(log.read_text()) if log.exists() else None


def run_config(run: str | Path) -> dict:
    """The FinetuneConfig (as a dict) of a run folder."""
    run = Path(run)
    ckpt = run / "checkpoint.pt"
    if ckpt.exists():
        return torch.load(ckpt, map_location="cpu", weights_only=False)["config"]
    log = logged_losses(run)
    if log is None:
        raise ValueError(f"{run}: no checkpoint.pt and no logged losses (is it the --out of `zoo finetune`?)")
    return log["config"]


def load_run_weights(run: str | Path, model, progress: bool = True) -> int:
    """Puts the run's trained weights into `model` (built as the run built it); returns their step."""
    run = Path(run)
    ckpt = run / "checkpoint.pt"
    if ckpt.exists():
        payload = torch.load(ckpt, map_location="cpu", weights_only=False)
        load_trainable_state(model, payload["params"])
        return payload["step"]
    log = logged_losses(run)
    cfg = FinetuneConfig(**log["config"])
    if cfg.estimator in FIRST_ORDER:
        raise ValueError(f"{run}: no checkpoint.pt, and a first-order ({cfg.estimator}) run cannot be replayed")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(cfg, params, model, stream=log.get("noise_stream"))
    TrajectoryLog(run).replay(log, model, opt, progress=progress)
    return log["step"]
