"""Where and when a number was measured, recorded beside it in every results file.

A step time means little without the threads it ran on: the cpu suite's runs use one
thread each so that two jobs share a 2-core machine, and a reader of the table must be
able to tell that from the results rather than from a note.
"""

from __future__ import annotations

import platform
from collections import Counter
from datetime import date

import torch


def machine() -> dict:
    """Today's date, the CPU architecture, torch's thread count and version, and the GPU if torch sees one."""
    return {"date": str(date.today()), "machine": platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def describe(records: list[dict | None]) -> str:
    """Where a set of results was measured, for a table's header: each distinct machine with its
    count of runs, the span of dates, and how many results predate the record (None)."""
    known = [r for r in records if r]
    groups = Counter((r["machine"], r["threads"], r["torch"], r.get("gpu")) for r in known)
    parts = [f"{arch}, {threads} thread{'' if threads == 1 else 's'}, torch {version}, {gpu or 'CPU'} ({_runs(n)})"
             for (arch, threads, version, gpu), n in groups.most_common()]
    dates = sorted(r["date"] for r in known)
    if dates:
        parts.append(f"finished {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else ""))
    missing = len(records) - len(known)
    if missing:
        parts.append(f"{_runs(missing)} finished before results recorded their machine")
    return "; ".join(parts) if parts else "no finished runs"
