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
from dataclasses import asdict
from pathlib import Path

import torch
from ..progress import progress as progress_bar
from ..files import RunFileError, read_json, write_json


def fingerprint_of(named_tensors) -> str:
    """A hash of (name, tensor) pairs' names, dtypes, shapes and bits, in their order."""
    h = hashlib.blake2b(digest_size=16)
    for name, p in named_tensors:
        t = p.detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(memoryview(t.view(torch.uint8).numpy()))  # hashed in place: no copy of the weights
    return h.hexdigest()


def trained_state(model) -> dict:
    """What a run changes, by name: the trainable parameters and sparse deltas' index sets (detached views)."""
    from ..tuning.sparse_delta import index_set_state

    return {**{n: p.detach() for n, p in model.named_parameters() if p.requires_grad}, **index_set_state(model)}


def weights_fingerprint(model) -> str:
    """A hash of the trainable parameters' (and index sets') names, dtypes, shapes and bits."""
    return fingerprint_of(trained_state(model).items())


def check_log(path: Path, payload: dict) -> None:
    """Refuses a loss log whose parts do not add up (a step past its logged losses, say).

    Raises:
        RunFileError: naming `path` and what is inconsistent.
    """
    def bad(why):
        return RunFileError(f"{path}: inconsistent: {why}; it cannot be replayed")

    for key, kind in (("config", dict), ("step", int), ("history", dict), ("weights", dict)):
        if not isinstance(payload.get(key), kind) or (kind is int and isinstance(payload[key], bool)):
            raise bad(f"'{key}' is missing or not a {kind.__name__}")
    step, h = payload["step"], payload["history"]
    if step < 0:
        raise bad(f"step {step} < 0")
    for key in ("step_losses", "steps", "loss", "forward_passes"):
        if not isinstance(h.get(key), list):
            raise bad(f"history has no '{key}' list")
        if len(h[key]) != step:
            raise bad(f"its step is {step} but its history holds {len(h[key])} {key.replace('_', ' ')}")
    if h["steps"] != list(range(1, step + 1)):
        raise bad("its history's steps are not 1, 2, ... in order")
    if not all(isinstance(x, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x)
               for x in h["step_losses"]):
        raise bad("a step's losses are not a list of numbers")
    if not all(isinstance(payload["weights"].get(k), str) for k in ("start", "at_step")):
        raise bad("its weights fingerprints are missing")


class TrajectoryLog:
    """Saves and replays `DIR/trajectory.json` (written atomically, like the checkpoint)."""

    def __init__(self, out: Path):
        self.path = Path(out) / "trajectory.json"

    def save(self, cfg, step: int, history: dict, elapsed: float, start_fingerprint: str, at_step: str,
             noise_stream: str) -> None:
        """Writes the log of the first `step` steps; `at_step` is the weights' fingerprint after them."""
        payload = {"config": asdict(cfg), "step": step, "elapsed": elapsed, "noise_stream": noise_stream,
                   "weights": {"start": start_fingerprint, "at_step": at_step}, "history": history}
        write_json(self.path, payload)

    def load(self, cfg) -> dict | None:
        """The log, checked: None where there is none.

        Raises:
            RunFileError: the file is damaged or does not add up.
            ValueError: it belongs to a run with another config.
        """
        if not self.path.exists():
            return None
        from .loop import check_same_config  # loop imports this module

        payload = read_json(self.path)
        check_log(self.path, payload)
        check_same_config(self.path, payload["config"], cfg)
        return payload

    def replay(self, payload: dict, model, opt, progress: bool = True, on_step=None,
               source: Path | None = None) -> None:
        """Brings `model` and `opt` from the initial weights to the log's step, checking both fingerprints.

        `on_step(step)`, where given, is called after each replayed step with the weights of that step
        (e.g. to score them); the final fingerprint check still covers every step. `source` is the file
        the payload came from, for messages (default: this log; results.json holds a finished run's).
        """
        where = source or self.path
        if weights_fingerprint(model) != payload["weights"]["start"]:
            raise ValueError(f"{where}: the model's initial weights differ from the run's (another model file, "
                             "dtype or adapter initialisation); it cannot be replayed: delete it to start the run over")
        saved, ours = payload.get("noise_stream"), opt.backend.stream.name  # logs before it was recorded: unknown
        if saved is not None and saved != ours:
            # checked before the replay: with other directions it would run to the end and fail the fingerprint
            raise ValueError(f"{where}: the run drew its directions from the {saved!r} stream, and this "
                             f"estimator's backend ({opt.backend.name!r}) draws {ours!r}; replay it where that "
                             "stream's backend works (philox: the 'cpu' or 'triton' backend)")
        steps = payload["history"]["step_losses"][:payload["step"]]
        for step, losses in enumerate(progress_bar(steps, desc="replaying the log", enabled=progress), start=1):
            opt.replay(losses)
            if on_step is not None:
                on_step(step)
        logged = payload["history"]["forward_passes"]
        if steps and opt.zo_state["forward_passes"] != logged[len(steps) - 1]:
            raise ValueError(f"{where}: replaying {len(steps)} steps ran {opt.zo_state['forward_passes']} forward "
                             f"passes where the log counts {logged[len(steps) - 1]}: it does not add up (another "
                             "estimator's settings?); delete it to start the run over")
        if weights_fingerprint(model) != payload["weights"]["at_step"]:
            raise ValueError(f"{where}: replaying {len(steps)} steps did not rebuild the saved weights "
                             "(a different torch build or perturbation kernel?); delete it to start the run over")
