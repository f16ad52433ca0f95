"""Reading task files, with every error located at a file and line.

Each reader yields `(line_number, record)` pairs, where a record is a dict of
column name to value. Users bring their own data through these, so a bad row
is reported as `path:line: what is wrong` and never as a traceback.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator


class TaskError(ValueError):
    """A task, file or row that cannot be used; the message names the file and line."""


def _open(path: Path):
    if not path.is_file():
        raise TaskError(f"{path}: no such file")
    return path.open(newline="", encoding="utf-8")


def read_delimited(path: Path, delimiter: str) -> Iterator[tuple[int, dict]]:
    """Rows of a TSV or CSV file with a header line."""
    with _open(path) as f:
        # TSV files of GLUE put quotes inside sentences; only CSV quotes fields
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if not header:
            raise TaskError(f"{path}: empty file (expected a header line)")
        header = [h.strip() for h in header]
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise TaskError(f"{path}:{line}: malformed row: {len(row)} fields where the header has {len(header)}")
            yield line, dict(zip(header, row))


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """One JSON object per line."""
    with _open(path) as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise TaskError(f"{path}:{line}: malformed JSON: {e.msg}") from None
            if not isinstance(record, dict):
                raise TaskError(f"{path}:{line}: expected a JSON object, got {type(record).__name__}")
            yield line, record


def read_prefixed(path: Path, separator: str) -> Iterator[tuple[int, dict]]:
    """Lines of the form `label<separator>text` (SST-5 as `4 text`, TREC as `DESC:manner text`)."""
    with _open(path) as f:
        for line, text in enumerate(f, start=1):
            text = text.rstrip("\n")
            if not text.strip():
                continue
            head, sep, rest = text.partition(" ")
            if not sep or not rest.strip():
                raise TaskError(f"{path}:{line}: expected 'label text', got {text[:60]!r}")
            label = head.split(separator)[0] if separator else head
            yield line, {"label": label, "text": rest.strip()}


def read_any(path: Path) -> Iterator[tuple[int, dict]]:
    """Dispatch on the file's suffix: .tsv, .csv or .jsonl."""
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return read_delimited(path, "\t")
    if suffix == ".csv":
        return read_delimited(path, ",")
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    raise TaskError(f"{path}: unsupported file type {suffix!r} (use .tsv, .csv or .jsonl)")
