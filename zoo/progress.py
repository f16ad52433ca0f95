"""Progress bars that suit where they are written.

On a terminal, tqdm's bar. Written to a file or a pipe (a job's log, `| tee`), a bar's carriage returns
pile up into one long line full of cursor codes, so there a plain line is printed instead, every
`PLAIN_EVERY_S` seconds and at the end: `desc: 120/400 (30%), 35 s, 3.4 it/s, loss=0.512`.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

#: Seconds between two plain progress lines off a terminal.
PLAIN_EVERY_S = 30.0


class PlainProgress:
    """The part of tqdm's interface zoo uses (iterate, update, set_postfix, close), as plain lines."""

    def __init__(self, iterable=None, *, total=None, desc="", initial=0, unit="it", file=None,
                 every_s: float = PLAIN_EVERY_S, leave: bool = True):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.start_n = initial, initial
        self.file = file or sys.stderr
        self.every_s, self.leave = every_s, leave
        self.t0 = self.last = time.monotonic()
        self.postfix = ""
        self.closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._print(now)

    def _print(self, now: float) -> None:
        elapsed = now - self.t0
        done = self.n - self.start_n
        of = f"/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {done / elapsed:.3g} {self.unit}/s" if elapsed > 0 and done else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of}, {elapsed:.0f} s{rate}{extra}", file=self.file, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.leave and self.n > self.start_n:
                self._print(time.monotonic())


def progress(iterable=None, *, enabled: bool = True, desc: str = "", total=None, initial: int = 0,
             unit: str = "it", leave: bool = True):
    """A progress bar over `iterable` (or one updated by hand): tqdm on a terminal, plain lines elsewhere,
    nothing when not `enabled`."""
    if not enabled or sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=leave, disable=not enabled)
    return PlainProgress(iterable, total=total, desc=desc, initial=initial, unit=unit, leave=leave)
