"""Where a benchmark script's figures go: benchmarks/results/NAME.json, with how and where they were measured."""

from __future__ import annotations

import json
from pathlib import Path

from zoo.provenance import machine


def save(name: str, figures: dict, command: str) -> dict:
    """Adds the command, date and machine to `figures`, writes results/NAME.json, prints it and returns it."""
    m = machine()
    out = {**figures, "command": command, "date": m["date"],
           "machine": f"{m['machine']}, {m['threads']} torch thread{'s' * (m['threads'] != 1)}, torch {m['torch']}"}
    text = json.dumps(out, indent=1)
    (Path(__file__).parent / "results" / f"{name}.json").write_text(text + "\n")
    print(text)
    return out
