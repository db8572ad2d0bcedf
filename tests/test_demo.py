"""The demo, run end to end as ``scripts/demo`` runs it, on a SQLite file of its own."""

import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "demo" / "manage.py"


def run_manage(*args, env):
    return subprocess.run(
        [sys.executable, str(MANAGE), *args], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=600,
    )


@pytest.fixture
def demo_env(tmp_path):
    require(importlib.util.find_spec("vega_datasets") is not None,
            "needs vega_datasets (pip install -e '.[demo]')")
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL",)}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    env.pop("DJANGO_SETTINGS_MODULE", None)
    migrated = run_manage("migrate", "--verbosity", "0", env=env)
    assert migrated.returncode == 0, migrated.stderr
    return env


def rundemo(env) -> str:
    done = run_manage("rundemo", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def query(env, sql):
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchone()[0]


def test_demo_imports_the_airports_collects_the_na_rows_and_reprocesses_them(demo_env):
    out = rundemo(demo_env)

    assert "No CELERY_BROKER_URL: every pipeline runs locally" in out
    assert "airports.load: 3376 rows staged as RawAirport, 0 already staged" in out
    assert "airports.states     3376 processed,  3364 succeeded,  12 ignored" in out
    assert "airports.import     3376 processed,  3364 succeeded,   0 ignored,  12 errored" in out
    assert "airports.by_state   3364 processed" in out
    assert "Error groups of airports.import: 1 open, 12 items" in out
    assert "KeyError: 'NA'  x12" in out
    assert "open error rows of airports.import: 0 (12 resolved by this reprocess)" in out
    assert "3376 raw rows, 3376 airports" in out
    assert "unknown state                  12 airports" in out
    assert "python demo/manage.py runserver" in out

    assert query(demo_env, "select count(*) from airports_airport") == 3376
    assert query(demo_env, "select count(*) from airports_airport where state_id is null") == 12
    unknown = "select airports from airports_statesummary where state_id is null"
    assert query(demo_env, unknown) == 12
    assert query(demo_env, "select count(*) from datapipe_pipelineerror where resolved") == 12


def test_running_the_demo_again_replaces_its_outputs_instead_of_duplicating_them(demo_env):
    rundemo(demo_env)
    out = rundemo(demo_env)

    assert "0 rows staged as RawAirport, 3376 already staged" in out
    # The NA rows fail again under the first version, and keep their fixed airports.
    assert "Error groups of airports.import: 1 open, 12 items" in out
    assert "3376 raw rows, 3376 airports" in out
    assert query(demo_env, "select count(*) from airports_airport") == 3376
    alaska = "select s.airports from airports_statesummary s join airports_state t " \
             "on s.state_id = t.id where t.code = 'AK'"
    assert query(demo_env, alaska) == 263
