"""How much compute a partial suite has spent and still needs, from its finished runs.

A suite's runs differ in cost by two orders of magnitude (a MiniLM head run against a
SmolLM2 RTE run), so a single mean per run would mislead. Each unfinished run is priced
at the median wall time of the finished runs of its own (model, task, method), whose lr,
eps and seed do not change a step's work; failing those, of its (model, task), since the
forward passes dominate and every method has the same budget of them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .suite import RunSpec, model_label, task_label
from ..files import read_json


@dataclass
class Remaining:
    spent_s: float  # wall time of the finished runs (resumed runs count every session)
    left_s: float  # the estimate for the unfinished runs that have a finished peer
    unpriced: int  # unfinished runs of a (model, task) with no finished run yet
    spent_by_model: dict[str, float]  # wall time of the finished runs, per model label


def _kind(spec: RunSpec) -> tuple[str, str, str]:
    return model_label(spec.model), task_label(spec.task), spec.estimator


def remaining(specs: list[RunSpec], root: Path) -> Remaining:
    """Spent and estimated remaining wall time of `specs`, whose results live under `root`."""
    by_method: dict[tuple, list[float]] = defaultdict(list)  # (model, task, method) -> wall times
    by_task: dict[tuple, list[float]] = defaultdict(list)  # (model, task) -> wall times
    pending = []
    for spec in specs:
        path = spec.folder(root) / "results.json"
        if path.exists():
            seconds = read_json(path)["wall_time_s"]
            by_method[_kind(spec)].append(seconds)
            by_task[_kind(spec)[:2]].append(seconds)
        else:
            pending.append(spec)
    left, unpriced = 0.0, 0
    for spec in pending:
        peers = by_method.get(_kind(spec)) or by_task.get(_kind(spec)[:2])
        if peers:
            left += statistics.median(peers)
        else:
            unpriced += 1
    spent_by_model: dict[str, float] = defaultdict(float)
    for (model, _, _), seconds in by_method.items():
        spent_by_model[model] += sum(seconds)
    return Remaining(spent_s=sum(spent_by_model.values()), left_s=left, unpriced=unpriced,
                     spent_by_model=dict(spent_by_model))


def describe(r: Remaining) -> str:
    """One sentence for the summary of a partial suite."""
    text = (f"The finished runs took {r.spent_s / 3600:.1f} h of wall time; at the median wall time of "
            f"finished runs of the same model, task and method (else of the same model and task), the others "
            f"need about {r.left_s / 3600:.1f} h more")
    if r.unpriced:
        text += f", plus {r.unpriced} runs of a model and task with no finished run yet"
    return text + "."


def describe_spent(r: Remaining) -> str:
    """One sentence for the summary of a finished suite: what its runs cost, per model."""
    per_model = ", ".join(f"{m} {s / 3600:.2f} h" for m, s in sorted(r.spent_by_model.items(), key=lambda kv: -kv[1]))
    return (f"The runs' wall times sum to {r.spent_s / 3600:.2f} h ({per_model}); runs trained side by side "
            "(`--jobs`) overlap, and the one-batch sections and baselines are not included.")
