"""``python -m benchmarks.concurrency`` runs end to end (tiny sizes, no timing)."""

import os
import subprocess
import sys

import pytest

from tests.test_benchmarks_smoke import REPO, _database_url


@pytest.mark.django_db(transaction=True)
def test_the_concurrency_benchmark_prints_and_writes_its_tables(tmp_path):
    output = tmp_path / "CONCURRENCY.md"
    env = dict(os.environ, DATABASE_URL=_database_url(tmp_path),
               DJANGO_SETTINGS_MODULE="benchmarks.settings")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.concurrency", "--items", "10", "--levels", "1,5",
         "--overhead-items", "300", "--repeat", "1", "--output", str(output)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    for row in (
        "## 10 items, each one HTTP call answered after 50 ms",
        "| 1 | ",
        "| 5 | ",
        "| benchmarks.outputs (no fetch) |",
        "| benchmarks.outputs_fetch (a fetch override) |",
        "| fetch override at concurrency 1, no I/O: throughput lost |",
    ):
        assert row in completed.stdout
    assert output.read_text() == completed.stdout.rstrip("\n") + "\n"
