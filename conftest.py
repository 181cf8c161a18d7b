"""Root pytest configuration: every test and every nbval-executed notebook runs at the ci profile."""

import os
import sys
import time
from pathlib import Path

os.environ["COURSE_PROFILE"] = "ci"
os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))

_STARTED = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the wall time of every chapter executed in this session, slowest first."""
    import course

    table = course.timing_table(since=_STARTED)
    if table:
        terminalreporter.write_sep("=", "chapter wall times (papermill, ci profile; budget 45 s each)")
        terminalreporter.write_line(table)
