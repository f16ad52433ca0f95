"""The comparative benchmark suite behind `zoo bench`.

    suite.py     what a suite is (JSON), presets, the runs it expands to
    fixtures.py  tiny model and data for the smoke preset
    selection.py `--only`: which runs one process executes
    runner.py    runs and resumes every run and baseline, checks forward counts
    report.py    summary.md, summary.json and plots
"""

from .report import publish, write_report
from .runner import run_suite
from .selection import Selection, parse_selection
from .suite import PRESETS, RunSpec, Suite, load_suite

__all__ = ["PRESETS", "publish", "RunSpec", "Selection", "Suite", "parse_selection", "load_suite", "run_suite", "write_report"]
