"""`zoo bench --only`: which of a suite's runs this process executes.

A suite's runs take hours, and they do not cost the same: a MiniLM head run takes seconds
where a SmolLM2 RTE run takes half an hour. `--only model=minilm-l6` lets a second process
finish the cheap rows beside a running suite (the two claim runs through folder locks, so
they never run the same one) or lets a user rerun one slice. The report always covers the
whole suite: a selection changes what runs, never what the table shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .suite import Suite, model_label, task_label

KEYS = ("model", "task", "method", "seed")


@dataclass(frozen=True)
class Selection:
    """Allowed values per key; a key that is absent allows everything."""

    allowed: dict[str, frozenset[str]] = field(default_factory=dict)

    def admits(self, model: dict, task: str, method: str, seed: int) -> bool:
        """True when the run or baseline (model entry, task, method or baseline kind, seed) is selected."""
        values = {"model": {model["model"], model_label(model)}, "task": {task_label(task)},
                  "method": {method}, "seed": {str(seed)}}
        return all(values[k] & allowed for k, allowed in self.allowed.items())


def _choices(suite: Suite) -> dict[str, set[str]]:
    return {
        "model": {m["model"] for m in suite.models} | {model_label(m) for m in suite.models},
        "task": {task_label(t) for t in suite.tasks},
        "method": {*suite.estimator_names(), *suite.baselines,
                   *(name for m in suite.models for name in m.get("first_order", suite.first_order))},
        "seed": {str(s) for s in suite.seeds},
    }


def parse_selection(items: list[str] | None, suite: Suite) -> Selection:
    """A Selection from `key=value[,value...]` items, checked against what the suite has.

    Raises:
        ValueError: an item without '=', an unknown key, a key given twice, or a value the suite
            lacks (the message lists what it has).
    """
    if not items:
        return Selection()
    choices = _choices(suite)
    allowed: dict[str, frozenset[str]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not raw.strip():
            raise ValueError(f"--only {item!r}: expected key=value, with key one of {', '.join(KEYS)}")
        if key not in KEYS:
            raise ValueError(f"--only {item!r}: unknown key {key!r} (one of {', '.join(KEYS)})")
        if key in allowed:
            raise ValueError(f"--only: {key} given twice; list its values as {key}=a,b")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        for v in values:
            if v not in choices[key]:
                raise ValueError(f"--only {key}={v}: suite {suite.name!r} has no such {key} "
                                 f"(it has {', '.join(sorted(choices[key]))})")
        allowed[key] = frozenset(values)
    return Selection(allowed)
