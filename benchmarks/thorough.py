"""``--thorough``: the reparse property test with the thorough profile (1,000 examples).

The suite runs it with 25 examples (tests/conftest.py); here it runs with 1,000 on the
benchmark's database server, in a pytest process of its own, and the report says how
many examples passed and how long they took.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: The property test: any sequence of runs leaves each item's outputs as a model says.
TEST = "tests/test_reparse.py::test_outputs_match_the_model_after_any_sequence_of_runs"


@dataclass(frozen=True)
class PropertyTest:
    """The outcome of one thorough run."""

    passed: bool
    examples: int  # passing examples, as Hypothesis counts them
    seconds: float
    summary: str  # pytest's last line


def property_test() -> PropertyTest:
    """Run :data:`TEST` with ``DATAPIPE_HYPOTHESIS_PROFILE=thorough``."""
    env = dict(os.environ, DATAPIPE_HYPOTHESIS_PROFILE="thorough",
               DJANGO_SETTINGS_MODULE="tests.settings")
    print(f"  thorough: {TEST}, 1,000 examples", file=sys.stderr, flush=True)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider",
         "--hypothesis-show-statistics"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    passing = re.search(r"(\d+) passing", completed.stdout)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-2000:])
    return PropertyTest(
        passed=completed.returncode == 0,
        examples=int(passing[1]) if passing else 0,
        seconds=seconds,
        summary=lines[-1] if lines else completed.stderr.strip()[-200:],
    )
