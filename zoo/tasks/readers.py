"""Reading task files, with every error located at a file and line.

Each reader yields `(line_number, record)` pairs, where a record is a dict of
column name to value. Users bring their own data through these, so a bad row
is reported as `path:line: what is wrong` and never as a traceback.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator


class TaskError(ValueError):
    """A task, file or row that cannot be used; the message names the file and line."""


#: What --encoding accepts: UTF-8 (a leading byte-order mark is dropped either way) and Latin-1, the
#: encoding of many older NLP releases (the MR movie reviews, for one).
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1", "iso-8859-1", "cp1252")

# csv's default 128 KiB field limit would refuse a long document that JSONL accepts; one rule for all three
# formats: a field may be as long as a line
csv.field_size_limit(2**31 - 1)


def check_encoding(encoding: str) -> str:
    if not isinstance(encoding, str) or encoding.lower().replace("_", "-") not in ENCODINGS:
        raise TaskError(f"encoding: use one of {', '.join(ENCODINGS)}, got {encoding!r}")
    return encoding.lower().replace("_", "-")


def _open(path: Path, encoding: str = "utf-8") -> io.StringIO:
    """The file's text, decoded whole so that a bad byte is reported at its line and column."""
    encoding = check_encoding(encoding)
    if not path.is_file():
        raise TaskError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise TaskError(f"{path}:{line}: not valid {encoding.upper()} (byte 0x{data[e.start]:02x} at column {column}); "
                        "if the file is Latin-1 (ISO-8859-1), pass --encoding latin-1, or convert it with "
                        f"`iconv -f latin1 -t utf-8 {path.name}`") from None
    return io.StringIO(text.removeprefix("\ufeff"), newline="")


def read_delimited(path: Path, delimiter: str, encoding: str = "utf-8") -> Iterator[tuple[int, dict]]:
    """Rows of a TSV or CSV file with a header line."""
    with _open(path, encoding) as f:
        # TSV files of GLUE put quotes inside sentences; only CSV quotes fields
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        rows = _located(reader, path)
        header = next(rows, None)
        if not header:
            raise TaskError(f"{path}: empty file (expected a header line)")
        header = [h.strip() for h in header]
        for row in rows:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                spans = sum(c.rstrip("\n").count("\n") for c in row)
                if spans:  # a quote opened and never closed swallows the lines after it into one field
                    raise TaskError(f"{path}:{line - spans}: malformed row: a quoted field runs on to line {line} "
                                    "(a quote that is never closed?)")
                raise TaskError(f"{path}:{line}: malformed row: {len(row)} fields where the header has {len(header)}")
            yield line, dict(zip(header, row))


def _located(reader, path: Path):
    """The csv reader's rows, with its errors (a NUL byte, an unclosed quote) located at a line."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise TaskError(f"{path}:{reader.line_num}: malformed row: {e}") from None


def read_jsonl(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, dict]]:
    """One JSON object per line."""
    with _open(path, encoding) as f:
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


def read_any(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, dict]]:
    """Dispatch on the file's suffix: .tsv, .csv or .jsonl."""
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return read_delimited(path, "\t", encoding)
    if suffix == ".csv":
        return read_delimited(path, ",", encoding)
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path, encoding)
    raise TaskError(f"{path}: unsupported file type {suffix!r} (use .tsv, .csv or .jsonl)")
