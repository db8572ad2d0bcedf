"""The lineage benchmark runs end to end on the suite's database (tiny sizes, no timing)."""

import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.test_benchmarks_smoke import REPO, _database_url


@pytest.mark.django_db(transaction=True)
def test_the_lineage_benchmark_prints_and_writes_its_tables(tmp_path):
    output = tmp_path / "LINEAGE.md"
    env = dict(os.environ, DATABASE_URL=_database_url(tmp_path),
               DJANGO_SETTINGS_MODULE="benchmarks.settings")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.lineage", "--trackers", "3000", "--items", "300",
         "--repeat", "1", "--reads", "2", "--output", str(output)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )

    assert completed.returncode == 0, completed.stderr
    text = completed.stdout
    assert "3,000 trackers" in text
    assert "| upstream(tag) | 2 steps back: `news.link.tags`, `news.import` | 6 |" in text
    assert "| downstream(raw item) | 5 objects, 2 levels | 6 |" in text
    if connection.vendor == "postgresql":
        assert "Bitmap Index Scan on datapipe_track_outputs_gin" in text
        assert "| inserting 300 trackers (COPY, batches of 2,000) |" in text
        assert "| local run, 300 items, one output each |" in text
    else:
        assert "json_each over every row (no index)" in text
    assert output.read_text() == text.rstrip("\n") + "\n"
