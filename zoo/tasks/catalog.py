"""The built-in tasks: where their files live and how a record becomes an Example.

Files are read from the data folder (see `data_dir`); its layout is that of
the project's shared data (`glue-sst2/`, `stsa/`, `trec/`, `superglue-rte/`,
`superglue-cb/`, `fewglue32dev/`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import hub
from .example import Example
from .readers import TaskError, check_encoding, read_any, read_delimited, read_jsonl, read_prefixed
from .templates import TEMPLATES, Template, generic_template

Parse = Callable[[dict], Iterator[tuple[dict, object]]]


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """`explicit`, else $ZOO_DATA_DIR, else the first `../shared/data` found from the cwd or the package."""
    if explicit:
        return Path(explicit)
    if os.environ.get("ZOO_DATA_DIR"):
        return Path(os.environ["ZOO_DATA_DIR"])
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


@dataclass
class Task:
    """A labelled task: splits on disk, class names, templates.

    Attributes:
        label_names: class names; `label_keys[i]` are the raw labels of class i.
        files: split name -> file (relative to the data folder unless absolute).
        eval_split: the labelled held-out split that few-shot papers report on.
    """

    name: str
    label_names: tuple[str, ...]
    label_keys: tuple[str, ...]
    files: dict[str, str]
    parse: Parse
    reader: Callable[[Path], Iterator[tuple[int, dict]]]
    templates: dict[str, Template]
    eval_split: str
    root: Path | None = None
    hub: bool = False  # a built-in task: a split missing locally may come from its public copy (tasks/hub.py)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def splits(self) -> list[str]:
        return list(self.files)

    def template(self, name: str | None = None) -> Template:
        name = name or next(iter(self.templates))
        if name not in self.templates:
            raise TaskError(f"task {self.name!r} has no template {name!r}; it has {', '.join(self.templates)}")
        return self.templates[name]

    def path(self, split: str) -> Path:
        if split not in self.files:
            raise TaskError(f"task {self.name!r} has no split {split!r}; it has {', '.join(self.files)}")
        p = Path(self.files[split])
        return p if p.is_absolute() else (self.root or data_dir()) / p

    def examples(self, split: str) -> list[Example]:
        path = self.path(split)
        source, rows = path, None
        if path.is_file():
            rows = self.reader(path)
        elif self.hub and hub.available(self.name, split):
            source, rows = f"hub:{hub.HUB[self.name][0]}/{split}", hub.records(self.name, split)
        else:
            raise TaskError(f"{path}: no such file (point --data-dir or $ZOO_DATA_DIR at the task data folder)")
        index = {k: i for i, k in enumerate(self.label_keys)}
        out = []
        for line, record in rows:
            where = f"{source}:{line}"
            try:
                parsed = list(self.parse(record))
            except (KeyError, TypeError, IndexError, AttributeError) as e:
                raise TaskError(f"{where}: malformed {self.name} record ({type(e).__name__}: {e})") from None
            for fields, raw in parsed:
                key = str(raw).strip().lower()
                if key not in index:
                    raise TaskError(f"{where}: unknown label {raw!r}; {self.name} labels are {', '.join(self.label_keys)}")
                out.append(Example(fields, index[key], where))
        if not out:
            raise TaskError(f"{source}: no examples")
        return out


def _lc_first(s: str) -> str:
    return s[:1].lower() + s[1:]


def _sentence(r):
    yield {"text": r["sentence"]}, r["label"]


def _labelled_text(r):
    yield {"text": r["text"]}, r["label"]


def _nli(r):
    yield {"premise": r["premise"], "hypothesis": r["hypothesis"], "text": r["premise"],
           "text_b": r["hypothesis"]}, r["label"]


def _boolq(r):
    yield {"passage": r["passage"], "question": r["question"], "text": r["question"],
           "text_b": r["passage"]}, r["label"]


def _copa(r):
    connective = {"cause": "because", "effect": "so"}[r["question"]]
    stem = r["premise"].rstrip().rstrip(".")
    yield {"premise_stem": stem, "connective": connective, "choice1_lc": _lc_first(r["choice1"]),
           "choice2_lc": _lc_first(r["choice2"]), "text": f"{stem} {connective}",
           "text_b": f"{r['choice1']} / {r['choice2']}"}, r["label"]


def _wic(r):
    yield {"word": r["word"], "sentence1": r["sentence1"], "sentence2": r["sentence2"],
           "text": f"{r['word']}: {r['sentence1']}", "text_b": r["sentence2"]}, r["label"]


def _wsc(r):
    t = r["target"]
    yield {"text": r["text"], "pronoun": t["span2_text"].lower(), "referent": t["span1_text"],
           "text_b": f"{t['span2_text']} -> {t['span1_text']}"}, r["label"]


def _multirc(r):
    paragraph = r["passage"]["text"]
    for q in r["passage"]["questions"]:
        for a in q["answers"]:
            yield {"paragraph": paragraph, "question": q["question"], "answer": a["text"],
                   "text": f"{q['question']} {a['text']}", "text_b": paragraph}, bool(a["label"])


def _tsv(path):
    return read_delimited(path, "\t")


def _fewglue(name: str, parse: Parse, names, keys) -> Task:
    folder = f"fewglue32dev/{name}"
    return Task(name.lower(), names, keys,
                {"train": f"{folder}/train.jsonl", "dev32": f"{folder}/dev32.jsonl", "val": f"{folder}/val.jsonl"},
                parse, read_jsonl, TEMPLATES[name.lower()], "val")


YES_NO = (("no", "yes"), ("false", "true"))


def _builtin() -> dict[str, Task]:
    nli2 = (("entailment", "not_entailment"), ("entailment", "not_entailment"))
    return {
        "sst2": Task("sst2", ("negative", "positive"), ("0", "1"),
                     {"train": "glue-sst2/train_full.tsv", "dev": "glue-sst2/dev.tsv",
                      "test": "glue-sst2/test-labeled.tsv"}, _sentence, _tsv, TEMPLATES["sst2"], "dev"),
        "sst5": Task("sst5", ("very negative", "negative", "neutral", "positive", "very positive"),
                     ("0", "1", "2", "3", "4"),
                     {"train": "stsa/stsa.fine.train", "dev": "stsa/stsa.fine.dev", "test": "stsa/stsa.fine.test"},
                     _labelled_text, lambda p: read_prefixed(p, ""), TEMPLATES["sst5"], "test"),
        "trec": Task("trec", ("description", "entity", "abbreviation", "human", "location", "number"),
                     ("desc", "enty", "abbr", "hum", "loc", "num"),
                     {"train": "trec/train.txt", "test": "trec/test.txt"},
                     _labelled_text, lambda p: read_prefixed(p, ":"), TEMPLATES["trec"], "test"),
        "rte": Task("rte", *nli2, {"train": "superglue-rte/train.jsonl", "val": "superglue-rte/val.jsonl"},
                    _nli, read_jsonl, TEMPLATES["rte"], "val"),
        "cb": Task("cb", ("entailment", "contradiction", "neutral"), ("entailment", "contradiction", "neutral"),
                   {"train": "superglue-cb/train.jsonl", "val": "superglue-cb/val.jsonl"},
                   _nli, read_jsonl, TEMPLATES["cb"], "val"),
        "boolq": _fewglue("BoolQ", _boolq, *YES_NO),
        "copa": _fewglue("COPA", _copa, ("choice1", "choice2"), ("0", "1")),
        "wic": _fewglue("WiC", _wic, *YES_NO),
        "wsc": _fewglue("WSC", _wsc, *YES_NO),
        "multirc": _fewglue("MultiRC", _multirc, *YES_NO),
    }


BUILTIN = {name: dataclasses.replace(task, hub=True) for name, task in _builtin().items()}


def user_task(path: str | os.PathLike, text_column: str | None = None, text_b_column: str | None = None,
              label_column: str = "label", labels: list[str] | None = None, encoding: str = "utf-8") -> Task:
    """A task from a user's TSV, CSV or JSONL file.

    The text column defaults to `text`, else `sentence`. Classes are the label
    values seen in the file, in sorted order, unless `labels` names them (then
    any other value is an error at its line). The file is one split, `all`;
    the sampling protocols draw train, dev and test from it without overlap.
    `encoding`: the file's (readers.ENCODINGS), UTF-8 by default.
    """
    path = Path(path)
    check_encoding(encoding)
    if labels is not None:
        labels = [str(label).strip() for label in labels]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise TaskError(f"labels: {', '.join(map(repr, twice))} given more than once; name each class once")
        if any(not label for label in labels):
            raise TaskError("labels: an empty label name")
    reader = functools.partial(read_any, encoding=encoding)
    rows = list(reader(path))
    if not rows:
        raise TaskError(f"{path}: no data rows")
    first_line, first = rows[0]
    if text_column is None:
        text_column = next((c for c in ("text", "sentence") if c in first), None)
        if text_column is None:
            raise TaskError(f"{path}:{first_line}: no 'text' or 'sentence' column (columns: {', '.join(first)}); "
                            "name one with --text-column")
    needed = [c for c in (text_column, text_b_column, label_column) if c]
    for line, row in rows:
        for col in needed:
            if col not in row:
                raise TaskError(f"{path}:{line}: missing column {col!r} (columns: {', '.join(row)})")
            if row[col] is None or str(row[col]).strip() == "":
                raise TaskError(f"{path}:{line}: empty {col!r}")
    seen = {str(row[label_column]).strip() for _, row in rows}
    labels = tuple(labels) if labels else tuple(sorted(seen))
    if len(labels) < 2:
        raise TaskError(f"{path}: column {label_column!r} has a single label {labels[0]!r}; need at least two classes")

    def parse(r):
        fields = {"text": str(r[text_column])}
        if text_b_column:
            fields["text_b"] = str(r[text_b_column])
        yield fields, str(r[label_column]).strip()

    template = generic_template(labels, text_b_column is not None)
    return Task(path.stem, labels, tuple(k.lower() for k in labels), {"all": str(path.resolve())}, parse,
                reader, {template.name: template}, "all")


def get_task(name: str, data_dir_: str | os.PathLike | None = None, **columns) -> Task:
    """A built-in task by short name, or a user's own `.tsv`/`.csv`/`.jsonl` file."""
    key = name.lower()
    if key in BUILTIN:
        task = BUILTIN[key]
        return Task(**{**task.__dict__, "root": data_dir(data_dir_)})
    if Path(name).suffix.lower() in (".tsv", ".csv", ".jsonl", ".json"):
        return user_task(name, **columns)
    raise TaskError(f"unknown task {name!r}: use one of {', '.join(BUILTIN)} or the path of a .tsv, .csv or .jsonl file")
