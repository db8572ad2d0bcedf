"""Celery workers for scenario 5, started for the benchmark and stopped after it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .scenarios import CELERY_WORKERS

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def celery_workers(enabled: bool):
    """Run the body with one ``celery worker`` of ``CELERY_WORKERS`` pool processes up."""
    if not enabled:
        yield
        return
    from .celery_app import QUEUE

    log_path = Path(tempfile.mkstemp(prefix="datapipe-benchmarks-worker-", suffix=".log")[1])
    name = f"datapipe-benchmarks-{os.getpid()}@{socket.gethostname()}"
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="benchmarks.settings", PYTHONPATH=str(REPO))
    command = [
        sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker",
        "--pool=prefork", f"--concurrency={CELERY_WORKERS}", "-Q", QUEUE, "-n", name,
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING",
    ]  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_ready(process, name, log_path)
            yield
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # warm shutdown: the queue is empty
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
    log_path.unlink()


def _wait_ready(process: subprocess.Popen, name: str, log_path: Path, timeout: float = 60) -> None:
    # It answers a ping once it consumes (asked by name: the broker may be shared).
    from .celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited:\n{log_path.read_text()}")
        if app.control.ping(destination=[name], timeout=0.5):
            return
    raise RuntimeError(f"the Celery worker did not start:\n{log_path.read_text()}")
