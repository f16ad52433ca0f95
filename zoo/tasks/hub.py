"""Public copies of the built-in tasks on the Hugging Face hub, for machines without the data folder.

Used only when a split's file is missing from the data folder and the `datasets` library imports;
a hub that cannot be reached gives one clear error. Each entry names the hub dataset, its config,
the hub split behind each of zoo's splits, and how a hub record becomes the record that the task's
file reader would have produced, so the task's own parser (and its label checks) applies unchanged.
Splits that exist only in the shared data (SST-2's labelled test set, FewGLUE's dev32) have no entry.
"""

from __future__ import annotations

from typing import Callable, Iterator

TREC_COARSE = ("abbr", "enty", "desc", "hum", "loc", "num")  # the hub's coarse_label order


def _named(names: tuple[str, ...]) -> Callable[[dict], dict]:
    return lambda r: {**r, "label": names[r["label"]]}


def _true_false(r: dict) -> dict:
    return {**r, "label": "true" if r["label"] else "false"}


def _wsc(r: dict) -> dict:
    return {"text": r["text"], "target": {"span1_text": r["span1_text"], "span2_text": r["span2_text"]},
            "label": "true" if r["label"] else "false"}


def _multirc(r: dict) -> dict:
    # the hub flattens MultiRC to one row per answer; the FewGLUE file nests answers in questions
    answer = {"text": r["answer"], "label": r["label"]}
    return {"passage": {"text": r["paragraph"], "questions": [{"question": r["question"], "answers": [answer]}]}}


SUPER_GLUE = "aps/super_glue"
SG_SPLITS = {"train": "train", "val": "validation"}

# task -> (hub dataset, config, {zoo split: hub split}, record adapter)
HUB: dict[str, tuple[str, str | None, dict[str, str], Callable[[dict], dict]]] = {
    "sst2": ("nyu-mll/glue", "sst2", {"train": "train", "dev": "validation"}, lambda r: r),
    "sst5": ("SetFit/sst5", None, {"train": "train", "dev": "validation", "test": "test"}, lambda r: r),
    "trec": ("CogComp/trec", None, {"train": "train", "test": "test"},
             lambda r: {"text": r["text"], "label": TREC_COARSE[r["coarse_label"]]}),
    "rte": (SUPER_GLUE, "rte", SG_SPLITS, _named(("entailment", "not_entailment"))),
    "cb": (SUPER_GLUE, "cb", SG_SPLITS, _named(("entailment", "contradiction", "neutral"))),
    "boolq": (SUPER_GLUE, "boolq", SG_SPLITS, _true_false),
    "copa": (SUPER_GLUE, "copa", SG_SPLITS, lambda r: r),
    "wic": (SUPER_GLUE, "wic", SG_SPLITS, _true_false),
    "wsc": (SUPER_GLUE, "wsc.fixed", SG_SPLITS, _wsc),
    "multirc": (SUPER_GLUE, "multirc", SG_SPLITS, _multirc),
}


def available(task: str, split: str) -> bool:
    """Whether the hub has this split of this task and the `datasets` library is installed."""
    if split not in HUB.get(task, (None, None, {}, None))[2]:
        return False
    try:
        import datasets  # noqa: F401
    except ImportError:
        return False
    return True


def records(task: str, split: str) -> Iterator[tuple[int, dict]]:
    """(row number, record in the local file's shape) of a split, downloaded by `datasets`."""
    import datasets

    name, config, splits, adapt = HUB[task]
    where = f"{name}" + (f" ({config})" if config else "") + f" split {splits[split]}"
    try:
        rows = datasets.load_dataset(name, config, split=splits[split])
    except Exception as e:  # network, authentication or a renamed dataset: one line that says which
        raise ConnectionError(f"{task}: no local file, and the hub copy {where} did not load "
                              f"({type(e).__name__}: {e}); point --data-dir at the task data") from None
    for i, row in enumerate(rows, start=1):
        yield i, adapt(dict(row))
