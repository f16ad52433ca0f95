"""`DIR/trajectory.json`: a ZO run stored as its closure's losses, resumable without a weight checkpoint.

A ZO step is a function of the weights, the step seed and the 2n losses the
closure returned (`ZOOptimizer.replay`), so the initial weights plus these
losses rebuild the weights of any step bit for bit. For full fine-tuning of
SmolLM2-135M the weight checkpoint is 540 MB, the log about 40 bytes a step:
small enough to commit, so a long run goes on in a later session on a fresh
machine that has only the pretrained weights. Fingerprints of the weights at
the start and at the saved step catch a log replayed onto other weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm


def weights_fingerprint(model) -> str:
    """A hash of the trainable parameters' names, dtypes, shapes and bits."""
    h = hashlib.blake2b(digest_size=16)
    for name, p in model.named_parameters():
        if p.requires_grad:
            t = p.detach().contiguous().cpu()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            if t.numel():
                h.update(memoryview(t.view(torch.uint8).numpy()))  # hashed in place: no copy of the weights
    return h.hexdigest()


class TrajectoryLog:
    """Saves and replays `DIR/trajectory.json` (written atomically, like the checkpoint)."""

    def __init__(self, out: Path):
        self.path = Path(out) / "trajectory.json"

    def save(self, cfg, step: int, history: dict, elapsed: float, start_fingerprint: str, model,
             noise_stream: str) -> None:
        payload = {"config": asdict(cfg), "step": step, "elapsed": elapsed, "noise_stream": noise_stream,
                   "weights": {"start": start_fingerprint, "at_step": weights_fingerprint(model)},
                   "history": history}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(self.path)

    def load(self, cfg) -> dict | None:
        if not self.path.exists():
            return None
        from .loop import check_same_config  # loop imports this module

        payload = json.loads(self.path.read_text())
        check_same_config(self.path, payload["config"], cfg)
        return payload

    def replay(self, payload: dict, model, opt, progress: bool = True, on_step=None) -> None:
        """Brings `model` and `opt` from the initial weights to the log's step, checking both fingerprints.

        `on_step(step)`, where given, is called after each replayed step with the weights of that step
        (e.g. to score them); the final fingerprint check still covers every step.
        """
        if weights_fingerprint(model) != payload["weights"]["start"]:
            raise ValueError(f"{self.path}: the model's initial weights differ from the run's (another model file, "
                             "dtype or adapter initialisation); it cannot be replayed: delete it to start the run over")
        saved, ours = payload.get("noise_stream"), opt.backend.stream.name  # logs before it was recorded: unknown
        if saved is not None and saved != ours:
            # checked before the replay: with other directions it would run to the end and fail the fingerprint
            raise ValueError(f"{self.path}: the run drew its directions from the {saved!r} stream, and this "
                             f"estimator's backend ({opt.backend.name!r}) draws {ours!r}; replay it where that "
                             "stream's backend works (philox: the 'cpu' or 'triton' backend)")
        steps = payload["history"]["step_losses"][:payload["step"]]
        for step, losses in enumerate(tqdm(steps, desc="replaying the log", disable=not progress), start=1):
            opt.replay(losses)
            if on_step is not None:
                on_step(step)
        if weights_fingerprint(model) != payload["weights"]["at_step"]:
            raise ValueError(f"{self.path}: replaying {len(steps)} steps did not rebuild the saved weights "
                             "(a different torch build or perturbation kernel?); delete it to start the run over")
