"""The papers' sampling protocols. The same seed always gives the same sample.

- `few_shot`: LM-BFF (Gao et al. 2021), used by MeZO with RoBERTa: k training
  and k development examples per class, drawn without overlap from the
  training split; the test set is the task's labelled held-out split.
- `mezo_split`: MeZO's OPT experiments: 1,000 train and 500 dev examples from
  the training split, 1,000 test examples from the held-out split.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .catalog import Task
from .example import Example
from .readers import TaskError


@dataclass
class Splits:
    """A run's three sets. `test_source` says where the test set comes from: the task's held-out split
    (SST-2's 872-sentence GLUE dev.tsv is split "dev" of the files, and every zoo command calls it the
    test set), or a fixed fifth of a user's single file. dev is always drawn from the training split."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]
    test_source: str = "test"


def test_source(task: Task) -> str:
    """Where a task's test set comes from, in words."""
    return (f"the task's {task.eval_split!r} split" if task.eval_split != "all" else
            "a fixed fifth of the file")


def _per_class(examples, k, rng, task, what):
    by_class: dict[int, list[Example]] = {}
    for e in examples:
        by_class.setdefault(e.label, []).append(e)
    picked = []
    for label in sorted(by_class):
        pool = by_class[label]
        if len(pool) < k:
            raise TaskError(f"{task.name}: class {task.label_names[label]!r} has {len(pool)} {what} examples, "
                            f"fewer than k={k}")
        picked += rng.sample(pool, k)
    return picked


def held_out(task: Task, test_fraction: float = 0.2) -> tuple[list[Example], list[Example]]:
    """(source, test) of a task. A user's single file keeps a fixed fifth as its test set, the same for every seed."""
    if task.eval_split != "all":
        return task.examples("train"), task.examples(task.eval_split)
    pool = task.examples("all")
    random.Random(f"{task.name}/held-out").shuffle(pool)
    cut = max(1, int(len(pool) * test_fraction))
    return pool[cut:], pool[:cut]


def few_shot(task: Task, k: int, seed: int, test_limit: int | None = None) -> Splits:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise TaskError(f"k: must be an integer >= 1, got {k!r}")
    if test_limit is not None and (isinstance(test_limit, bool) or not isinstance(test_limit, int) or test_limit < 1):
        raise TaskError(f"test_limit: must be an integer >= 1 (or None: the whole test split), got {test_limit!r}")
    rng = random.Random(f"{task.name}/k{k}/seed{seed}")
    source, test = held_out(task)
    train = _per_class(source, k, rng, task, "training")
    taken = {id(e) for e in train}
    dev = _per_class([e for e in source if id(e) not in taken], k, rng, task, "remaining training")
    rng.shuffle(train)
    return Splits(train, dev, test[:test_limit] if test_limit else test, test_source(task))


def mezo_split(task: Task, seed: int, n_train: int = 1000, n_dev: int = 500, n_test: int = 1000) -> Splits:
    rng = random.Random(f"{task.name}/mezo/seed{seed}")
    source, held = held_out(task)
    test = rng.sample(held, min(n_test, len(held)))
    if len(source) < n_train + n_dev:
        picked = rng.sample(source, len(source))
        cut = max(1, len(source) - n_dev) if len(source) > n_dev else len(source) // 2
        return Splits(picked[:cut], picked[cut:], test, test_source(task))
    picked = rng.sample(source, n_train + n_dev)
    return Splits(picked[:n_train], picked[n_train:], test, test_source(task))
