"""Every file a run (or a benchmark, or a measurement) writes is written here, atomically, and read here, with the file named in any error.

A write goes to a private temporary name in the same folder and is renamed over the target only once
complete and flushed, so a kill, a crash or a full disk leaves the previous file (or none), never a
truncated one. A read that fails says which file and what is wrong with it in one line
(`RunFileError`, a ValueError, which the CLI prints as such).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Callable


class RunFileError(ValueError):
    """A run file that cannot be written or read; the message starts with its path."""


def _no_space(error: BaseException, folder: Path) -> bool:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    try:  # torch's serializer reports a full disk as a RuntimeError of its own, without errno
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it over `path`.

    Raises:
        RunFileError: the write failed ("no space left on device" where the disk is full); the
            previous `path`, if any, is untouched and the temporary file is gone.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename, so that a power cut keeps one of the two
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        full = _no_space(e, path.parent)
        tmp.unlink(missing_ok=True)
        kept = f"; the previous {path.name} is kept" if path.exists() else ""
        why = "no space left on device" if full else (getattr(e, "strerror", None) or str(e).splitlines()[0])
        raise RunFileError(f"{path}: could not write it: {why}{kept}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj, indent: int | None = None) -> None:
    write_text(path, json.dumps(obj, indent=indent))


def save_torch(path: str | Path, payload) -> None:
    import torch

    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def save_figure(fig, path: str | Path, **kwargs) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs))


def read_json(path: str | Path) -> dict:
    """A JSON object from `path`.

    Raises:
        RunFileError: not readable, not UTF-8, not JSON (with line and column), or not an object.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RunFileError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RunFileError(f"{path}: damaged: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    if not text.strip():
        raise RunFileError(f"{path}: damaged: the file is empty")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunFileError(f"{path}: damaged: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}; "
                           f"{len(data)} bytes, truncated?)") from None
    if not isinstance(obj, dict):
        raise RunFileError(f"{path}: damaged: expected a JSON object, got a {type(obj).__name__}")
    return obj


def load_torch(path: str | Path, map_location=None) -> dict:
    """A dict saved by `save_torch`.

    Raises:
        RunFileError: empty, truncated, not a torch file, or not a dict.
    """
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise RunFileError(f"{path}: cannot read it: {e.strerror or e}") from None
    if size == 0:
        raise RunFileError(f"{path}: damaged: the file is empty")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001  any byte string may reach the unpickler: all of them mean damaged
        # (random bytes have raised EOFError, UnpicklingError, KeyError... and MemoryError, from an opcode
        # that asked for a huge allocation)
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunFileError(f"{path}: damaged: not a readable torch file ({type(e).__name__}: {why[:120]})") from None
    if not isinstance(payload, dict):
        raise RunFileError(f"{path}: damaged: expected a saved dict, got a {type(payload).__name__}")
    return payload
