"""Real Celery workers for the tests: ``celery worker`` subprocesses on the test database.

``celery_worker`` starts one worker (2 prefork processes) on a queue of its own for the
test; ``start_worker`` starts more (the tests of killed workers). The workers connect
to the database the test runs on: pytest-django's ``test_...`` database, whose name is
passed to them in ``DATABASE_URL``. They need PostgreSQL (a SQLite file cannot be
shared safely with worker processes) and Redis: on SQLite the tests skip; on
PostgreSQL a missing Redis skips them on a laptop and fails them in CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parent.parent


def broker_url() -> str:
    return os.environ.get("CELERY_BROKER_URL", "")


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def worker_database_url() -> str:
    """The URL of the database this test process uses (pytest-django's test database)."""
    settings = connection.settings_dict
    credentials = quote(settings["USER"] or "", safe="")
    if settings.get("PASSWORD"):
        credentials += ":" + quote(settings["PASSWORD"], safe="")
    host = settings["HOST"] or "localhost"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgres://{credentials}@{host}{port}/{settings['NAME']}"


def require_celery() -> None:
    """Skip unless on PostgreSQL; then Redis is required (fails in CI when missing)."""
    from tests.conftest import require  # not at import time: conftest imports this module

    if connection.vendor != "postgresql":
        pytest.skip("Celery tests run on PostgreSQL (workers share the test database)")
    url = broker_url()
    require(bool(url), "Celery tests need Redis: set CELERY_BROKER_URL")
    require(_redis_answers(url), f"Redis does not answer at {url}")


class Worker:
    """A ``celery worker`` subprocess consuming ``queue``, in its own process group.

    It uses the test database unless ``database_url`` names another.
    """

    def __init__(self, queue: str, concurrency: int = 2, database_url: str | None = None,
                 beat: bool = False, settings: dict | None = None):
        self.queue = queue
        self.database_url = database_url
        self.beat = beat
        self.settings = settings or {}
        self.name = f"{queue}-{uuid.uuid4().hex[:6]}@%h"
        self.concurrency = concurrency
        out = os.environ.get("DATAPIPE_TEST_OUTPUT") or tempfile.gettempdir()
        self.log_path = Path(out) / f"worker-{queue}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Worker:
        env = {**os.environ, "DATABASE_URL": self.database_url or worker_database_url(),
               "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO),
               "DATAPIPE_TEST_SETTINGS": json.dumps(self.settings),
               "DATAPIPE_TEST_SWEEP_QUEUE": self.queue}
        command = [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            "--pool=prefork", f"--concurrency={self.concurrency}", "-Q", self.queue,
            "-n", self.name, "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel=INFO",
        ]
        if self.beat:  # the beat scheduler in the worker: it sends datapipe.sweep
            command += ["-B", "-s", str(self.log_path.with_suffix(".schedule"))]
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while len(self.pool_pids()) < self.concurrency or not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The worker did not start:\n{self.log_path.read_text()}")
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        return "ready." in self.log_path.read_text()

    def pool_pids(self) -> list[int]:
        """The pids of the pool processes (the children of the worker's main process)."""
        if self.process is None or self.process.poll() is not None:
            return []
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
                             capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """``kill -9`` the whole worker: main process and pool processes."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the worker (cold shutdown), killing it if it lingers."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()


def purge(queue: str) -> None:
    """Drop the messages waiting in ``queue`` (left by an earlier test)."""
    import redis

    redis.Redis.from_url(broker_url()).delete(queue)


@pytest.fixture
def start_worker(transactional_db):
    """A factory: ``start_worker(queue)`` starts a worker; all are stopped after the test."""
    require_celery()
    started: list[Worker] = []

    def start(queue: str, concurrency: int = 2, **options) -> Worker:
        worker = Worker(queue, concurrency, **options)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def celery_queue(transactional_db):
    """A fresh queue name for this test (its leftovers are purged)."""
    require_celery()
    queue = f"datapipe-test-{uuid.uuid4().hex[:8]}"
    yield queue
    purge(queue)


@pytest.fixture
def celery_worker(start_worker, celery_queue) -> Worker:
    """A worker with 2 pool processes consuming this test's ``celery_queue``."""
    return start_worker(celery_queue)


def _pg_ctl(*args: str) -> None:
    command = [os.environ["DATAPIPE_TEST_PG_CTL"], *args, "-D", os.environ["DATAPIPE_TEST_PGDATA"]]
    user = os.environ.get("DATAPIPE_TEST_PG_USER")
    if user:
        command = ["runuser", "-u", user, "--", *command]
    subprocess.run(command, check=True, cwd=tempfile.gettempdir(), capture_output=True)


def require_postgres_control() -> None:
    """The fault tests that stop PostgreSQL need the server that scripts/test started."""
    from tests.conftest import require

    require(bool(os.environ.get("DATAPIPE_TEST_PG_CTL")),
            "needs the PostgreSQL server started by scripts/test (DATAPIPE_TEST_PG_CTL)")


def stop_postgres() -> None:
    """Stop the test's PostgreSQL server (fast shutdown: every connection is cut)."""
    connection.close()
    _pg_ctl("stop", "-m", "fast", "-w")


def start_postgres() -> None:
    """Start the test's PostgreSQL server again, as scripts/test started it."""
    _pg_ctl("start", "-w", "-l", os.environ["DATAPIPE_TEST_PG_LOG"],
            "-o", os.environ["DATAPIPE_TEST_PG_OPTIONS"])
    connection.close()
