"""Fixtures shared by the suite."""

import os

import pytest
from django.db import connection

from datapipe import get_session, registry

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip when a service is missing on a laptop; fail in CI, where it must exist."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def session():
    """A session with default options and no progress bar."""
    return get_session(progress=False)


@pytest.fixture
def isolated_registry():
    """Pipelines registered in the test are forgotten after it."""
    with registry.isolated() as isolated:
        yield isolated


@pytest.fixture
def postgres_only():
    require(connection.vendor == "postgresql", "needs PostgreSQL (set DATABASE_URL)")


from tests.workers import celery_queue, celery_worker, start_worker  # noqa: E402,F401  (Celery fixtures)
