"""DIR/metrics.jsonl (and, with --tensorboard, event files): a run's progress, followed as it goes.

One JSON line per training step ({"event": "step", "step", "forward_passes", "loss", "step_s", and "lr"
for the steps of this session}) and one per
evaluation ({"event": "eval", "step", "forward_passes", "dev_accuracy", "dev_loss", ...}). Lines are appended and
flushed as they happen, so `tail -f DIR/metrics.jsonl` follows the run. The run's history is the
record: when a run starts or resumes, the file is first rewritten from that history (atomically), so
steps redone after an interruption never appear twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_text


class MetricsLog:
    """Appends a run's step and evaluation records to DIR/metrics.jsonl (and TensorBoard).

    Args:
        out: the run's folder.
        enabled: False writes nothing (the ranks other than 0 of a torchrun run).
        tensorboard: also write TensorBoard event files to DIR/tensorboard.
    """

    def __init__(self, out: Path, enabled: bool = True, tensorboard: bool = False):
        self.path = Path(out) / "metrics.jsonl"
        self.enabled = enabled
        self._file = None
        self._board = None
        if tensorboard and enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError("--tensorboard: the tensorboard package is not installed (pip install tensorboard)") from None
            self._writer_class = SummaryWriter
        self.tensorboard = tensorboard and enabled

    def start(self, history: dict) -> None:
        """Rewrites the file from `history` (the run so far), then opens it for appending."""
        if not self.enabled:
            return
        lines = [self._step_line(history, i) for i in range(len(history["steps"]))]
        lines += [json.dumps({"event": "eval", **e}) for e in history["evals"]]
        lines.sort(key=lambda line: (json.loads(line)["step"], json.loads(line)["event"] == "step"))
        write_text(self.path, "".join(line + "\n" for line in lines))
        self._file = self.path.open("a")
        if self.tensorboard:
            # purge_step drops events a previous session wrote past the resumed step
            self._board = self._writer_class(log_dir=str(self.path.parent / "tensorboard"),
                                             purge_step=len(history["steps"]) or None)

    @staticmethod
    def _step_line(history: dict, i: int) -> str:
        record = {"event": "step", "step": history["steps"][i], "forward_passes": history["forward_passes"][i],
                  "loss": history["loss"][i]}
        if i < len(history.get("step_seconds", [])):
            record["step_s"] = history["step_seconds"][i]
        return json.dumps(record)

    def step(self, history: dict, lr: float) -> None:
        """The line of the step just recorded in `history`, taken at learning rate `lr`."""
        if self._file is None:
            return
        i = len(history["steps"]) - 1
        line = json.loads(self._step_line(history, i))
        self._write(json.dumps({**line, "lr": lr}))
        if self._board is not None:
            self._board.add_scalar("train/loss", history["loss"][i], history["steps"][i])
            self._board.add_scalar("train/lr", lr, history["steps"][i])

    def evaluation(self, entry: dict) -> None:
        if self._file is None:
            return
        self._write(json.dumps({"event": "eval", **entry}))
        if self._board is not None:
            for key, value in entry.items():
                if key not in ("step", "forward_passes") and isinstance(value, (int, float)):
                    self._board.add_scalar(key.replace("_", "/", 1), value, entry["step"])

    def _write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._board is not None:
            self._board.close()
            self._board = None
