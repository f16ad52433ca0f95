"""Where a benchmark script's figures go: benchmarks/results/NAME.json, with how and where they were measured."""

from __future__ import annotations

import json
import platform
from datetime import date
from pathlib import Path

import torch


def save(name: str, figures: dict, command: str) -> dict:
    """Adds the command, date and machine to `figures`, writes results/NAME.json, prints it and returns it."""
    out = {**figures, "command": command, "date": str(date.today()),
           "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"}
    text = json.dumps(out, indent=1)
    (Path(__file__).parent / "results" / f"{name}.json").write_text(text + "\n")
    print(text)
    return out
