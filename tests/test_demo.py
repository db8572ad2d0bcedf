"""The demo, run end to end as ``scripts/demo`` runs it, on a SQLite file of its own."""

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "demo" / "manage.py"


def run_manage(*args, env):
    return subprocess.run(
        [sys.executable, str(MANAGE), *args], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=600,
    )


def require_vega_datasets():
    require(importlib.util.find_spec("vega_datasets") is not None,
            "needs vega_datasets (pip install -e '.[demo]')")


@pytest.fixture
def demo_env(tmp_path):
    require_vega_datasets()
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


def assert_first_run_of_the_demo(out: str) -> None:
    """What a first run prints, wherever it runs: every step and its figures."""
    assert "airports.load: 3376 rows staged as RawAirport, 0 already staged" in out
    assert "airports.states     3376 processed,  3364 succeeded,  12 ignored" in out
    assert "airports.import     3376 processed,  3364 succeeded,   0 ignored,  12 errored" in out
    assert "airports.by_state   3364 processed" in out
    assert "Error groups of airports.import: 1 open, 12 items" in out
    assert "KeyError: 'NA'  x12" in out
    assert "open error rows of airports.import: 0 (12 resolved by this reprocess)" in out
    assert "3376 raw rows, 3376 airports, 56 states, 57 state summaries" in out
    assert "Alaska (AK)                   263 airports" in out
    assert "unknown state                  12 airports" in out
    assert "demo/manage.py runserver" in out
    # fetch() against the registry the demo serves itself, one airport at a time, then 25.
    assert "airports.check fetches 100 airports from a registry served on 127.0.0.1" in out
    assert "concurrency  1: 100 airports checked, 0 differ" in out
    assert "concurrency 25: 100 airports checked, 0 differ" in out


def test_demo_imports_the_airports_collects_the_na_rows_and_reprocesses_them(demo_env):
    out = rundemo(demo_env)

    assert "No CELERY_BROKER_URL: every pipeline runs locally" in out
    assert_first_run_of_the_demo(out)

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


ADMIN_CHECK = """
from django.contrib.auth.models import User
from django.test import Client
client = Client()
client.force_login(User.objects.create_superuser("admin", "admin@example.com", "x"))
for url, text in [
    ("/admin/datapipe/pipelineerror/", "KeyError"),
    ("/admin/datapipe/pipelinerun/?runs=all", "airports.by_state"),
    ("/admin/airports/airport/?q=Hilton+Head", "HHH"),
    ("/admin/airports/statesummary/", "Alaska"),
]:
    response = client.get(url)
    print(url, response.status_code, text in response.content.decode())
"""


def test_the_demo_admin_shows_runs_error_groups_and_airports(demo_env):
    rundemo(demo_env)
    env = {**demo_env, "DJANGO_ALLOWED_HOSTS": "testserver"}
    done = run_manage("shell", "-c", ADMIN_CHECK, env=env)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("/admin/")]
    assert len(lines) == 4
    for line in lines:
        assert line.endswith(" 200 True"), line


# On PostgreSQL with Celery workers, as docker-compose runs it ---------------------------


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


@pytest.fixture
def postgres_demo_env(tmp_path):
    """The environment of docker-compose: a database and a broker of the demo's own."""
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        pytest.skip("the demo on Celery workers runs on PostgreSQL (set DATABASE_URL)")
    require(bool(os.environ.get("CELERY_BROKER_URL")), "needs Redis: set CELERY_BROKER_URL")
    require_vega_datasets()
    import psycopg
    import redis

    # A Redis database of its own: no test worker consumes the demo's default queue there.
    broker = with_path(os.environ["CELERY_BROKER_URL"], "/7")
    redis.Redis.from_url(broker).flushdb()
    name = f"datapipe_demo_{uuid.uuid4().hex[:8]}"
    admin_url = with_path(database_url, "/postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DATABASE_URL=with_path(database_url, f"/{name}"), CELERY_BROKER_URL=broker)
    try:
        migrated = run_manage("migrate", "--verbosity", "0", env=env)
        assert migrated.returncode == 0, migrated.stderr
        yield env
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def demo_worker(postgres_demo_env, tmp_path):
    """The worker command of docker-compose.yml, as a subprocess."""
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "--workdir", "demo", "-A", "demoproject", "worker",
             "--concurrency", "2", "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=postgres_demo_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log_path.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield log_path
    finally:
        os.killpg(worker.pid, signal.SIGQUIT)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def test_demo_imports_on_celery_workers_when_a_broker_is_set(postgres_demo_env, demo_worker):
    done = run_manage("rundemo", "--timeout", "300", env=postgres_demo_env)
    assert done.returncode == 0, done.stdout + done.stderr + demo_worker.read_text()
    out = done.stdout

    assert "Database: postgresql" in out
    assert "the import runs on workers" in out
    assert "12 errored  (on workers, 1 run)" in out
    assert "airports.states     3376 processed,  3364 succeeded,  12 ignored,   0 errored  " \
           "(7 runs)" in out
    # The chunks' triggers each recounted some states: the last counts are the true ones.
    assert_first_run_of_the_demo(out)
    assert "datapipe.run" in demo_worker.read_text()
