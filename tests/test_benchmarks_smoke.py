"""The benchmark command runs end to end on the suite's database (tiny sizes, no timing)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parent.parent


def _database_url(tmp_path) -> str:
    """The suite's own test database on PostgreSQL; a fresh SQLite file otherwise."""
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        return (
            f"postgres://{settings['USER']}:{settings['PASSWORD']}@{settings['HOST']}:"
            f"{settings['PORT'] or 5432}/{settings['NAME']}"
        )
    return f"sqlite:///{tmp_path / 'benchmarks.sqlite3'}"


@pytest.mark.django_db(transaction=True)
def test_benchmark_command_prints_and_writes_the_results_table(tmp_path):
    output = tmp_path / "RESULTS.md"
    env = dict(
        os.environ,
        DATABASE_URL=_database_url(tmp_path),
        DJANGO_SETTINGS_MODULE="benchmarks.settings",
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--items",
            "200",
            "--repeat",
            "1",
            "--sizes",
            "100,400",
            "--only",
            "datapipe,naive,bulk_create,datapipe_update,datapipe_add_to_update",
            "--output",
            str(output),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    for row in (
        "| 1. datapipe, local run | 200 |",
        "| 2. naive loop",
        "| 3. raw bulk_create | 200 |",
        "| 4. datapipe, process() UPDATEs the item by a query | 200 |",
        "| 4b. datapipe, process() updates the item with add_to_update | 200 |",
        "| 1. datapipe, local run | 100 |",
        "| datapipe vs naive loop |",
        "| datapipe with add_to_update vs naive loop |",
        "datapipe, first run at 400 vs 200 items",
        "datapipe: peak RSS at 400 vs 100 items",
        "datapipe_add_to_update: peak RSS at 400 vs 100 items",
    ):
        assert row in completed.stdout
    assert output.read_text() == completed.stdout.rstrip("\n") + "\n"
