"""Peak memory of this process, resettable, so that one run's peak is not an earlier run's.

CPU: the peak resident set size, `VmHWM` of /proc/self/status, reset by writing 5 to
/proc/self/clear_refs (Linux >= 4.0). GPU: torch.cuda.max_memory_allocated after
torch.cuda.reset_peak_memory_stats. Where /proc is not there, the CPU peak is
getrusage's ru_maxrss, which covers the whole life of the process and cannot be reset.
"""

from __future__ import annotations

import gc
import re
import resource
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")


def rss_peak_bytes() -> int:
    if _STATUS.exists():
        return int(re.search(r"VmHWM:\s+(\d+) kB", _STATUS.read_text()).group(1)) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def rss_now_bytes() -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", _STATUS.read_text()).group(1)) * 1024


def reset_peak(cuda: bool) -> bool:
    """Starts a new peak; False where the CPU peak cannot be reset (no writable clear_refs)."""
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
