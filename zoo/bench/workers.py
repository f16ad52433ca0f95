"""`zoo bench --jobs N`: N-1 worker processes beside this one take the suite's pending runs.

Each run folder is claimed by the process that trains it (`zoo/finetune/lock.py`), so workers
split the runs without talking to each other. The cores are shared out: each process gets
torch threads // N, so two jobs on two cores run one thread each rather than fighting over both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import torch


def threads_per_job(jobs: int) -> int:
    return max(1, torch.get_num_threads() // jobs)


class Workers:
    """Worker processes running `zoo bench ... --worker` until the suite's runs are taken."""

    def __init__(self, bench_args: list[str], count: int, threads: int):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        # stderr to a file, not a pipe: a pipe nobody reads until the end would stall a chatty worker
        self._logs = [tempfile.TemporaryFile(mode="w+") for _ in range(count)]
        self._procs = [subprocess.Popen([sys.executable, "-m", "zoo", "bench", *bench_args, "--quiet", "--worker"],
                                        env=env, stdout=subprocess.DEVNULL, stderr=log) for log in self._logs]

    def wait(self) -> list[str]:
        """Waits for every worker; returns one line per failed worker."""
        failures = []
        for i, (proc, log) in enumerate(zip(self._procs, self._logs), 1):
            code = proc.wait()
            log.seek(0)
            lines = [line.strip() for line in log.read().splitlines() if line.strip()]
            log.close()
            if code != 0:
                failures.append(f"worker {i} exited {code}: {lines[-1] if lines else 'no message'}")
        return failures

    def stop(self) -> None:
        """Interrupts the workers as Ctrl-C would: each saves its run's checkpoint and exits."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self._procs:
            proc.wait()
