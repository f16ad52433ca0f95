"""One process per run folder: two jobs side by side (one per core) split the pending runs.

`claim(out)` creates `out/.running` holding this process's id, atomically: the file is written
under a private name and hard-linked into place, and the link fails when a lock is already there.
A lock whose process has died (a killed session, a crash) is taken over. Two processes taking
over the same dead lock at the same instant could both run that one folder; everything else is
exclusive.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

LOCK = ".running"


def _holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def claim(out: str | Path) -> bool:
    """Takes `out` for this process; False when a live process holds it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock, mine = out / LOCK, out / f"{LOCK}.{os.getpid()}"
    mine.write_text(str(os.getpid()))
    try:
        for _ in range(2):
            try:
                os.link(mine, lock)
                return True
            except FileExistsError:
                holder = _holder(lock)
                if holder == os.getpid():
                    return True
                if holder is not None and is_alive(holder):
                    return False
                lock.unlink(missing_ok=True)  # a dead process's lock
        return False
    finally:
        mine.unlink(missing_ok=True)


def release(out: str | Path) -> None:
    """Drops this process's lock on `out` (another process's lock stays)."""
    lock = Path(out) / LOCK
    if _holder(lock) == os.getpid():
        lock.unlink(missing_ok=True)


class FolderInUse(ValueError):
    """Another live zoo process holds the run folder."""


def holder(out: str | Path) -> int | None:
    """The process id that holds `out`, or None."""
    return _holder(Path(out) / LOCK)


def refuse_if_held(out: str | Path) -> None:
    """Raises FolderInUse when another live process holds `out` (a cheap check before loading a model)."""
    pid = holder(out)
    if pid is not None and pid != os.getpid() and is_alive(pid):
        raise FolderInUse(f"{out} is in use by another zoo process (pid {pid}); wait for it to finish, "
                          "or use another --out")


@contextmanager
def exclusive(out: str | Path):
    """Holds `out` for the body, or raises FolderInUse at once. Re-entrant within a process (a bench
    worker that claimed a run folder then trains in it); a lock left by a dead process is taken over."""
    out = Path(out)
    if holder(out) == os.getpid():
        yield
        return
    if not claim(out):
        refuse_if_held(out)
        raise FolderInUse(f"{out}: could not take its lock ({LOCK}); retry")  # its holder died meanwhile
    try:
        yield
    finally:
        release(out)


@contextmanager
def claimed(out: str | Path):
    """`with claimed(out) as mine:` runs the body with `mine` True when this process holds `out`."""
    mine = claim(out)
    try:
        yield mine
    finally:
        if mine:
            release(out)
