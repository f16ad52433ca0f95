"""Ctrl-C that lands between steps, so that an interrupted run resumes bit for bit.

An in-place ZO step moves the weights to theta + eps z and back; the way back restores them only to
within float32 rounding. A KeyboardInterrupt raised in the middle of the step would leave those
rounded weights (and a half-written history) to be checkpointed, and the resumed run would drift from
the uninterrupted one. So while a step runs, the first SIGINT is held: the step finishes, is recorded,
and the interrupt is raised after it. A second SIGINT stops at once; the loop then saves nothing from
that step (the previous checkpoint still holds the run).
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager


class StepGuard:
    """Holds SIGINT while `with guard.step():` runs (in the main thread; elsewhere signals cannot be held)."""

    def __init__(self):
        self.in_step = False
        self.pending = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.in_step and not self.pending:
            self.pending = True
            print("\nzoo: finishing the current step, then stopping (Ctrl-C again to stop at once)",
                  file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt

    @contextmanager
    def installed(self):
        """Installs the handler for the body (a no-op off the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, self._previous)

    @contextmanager
    def step(self):
        """The body runs with SIGINT held; a held one is raised as KeyboardInterrupt once the body is done."""
        self.in_step = True
        try:
            yield
        except BaseException:
            self.in_step = self.pending = False
            raise
        self.in_step = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
