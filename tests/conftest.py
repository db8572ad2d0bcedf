"""Fixtures shared by the suite."""

import os

import pytest
from django.db import connection
from hypothesis import settings

from datapipe import Pipe, get_session, pipeline, registry

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Property tests: 25 examples in the suite; the thorough profile (1,000) is what
# ``benchmarks/run --thorough`` runs: DATAPIPE_HYPOTHESIS_PROFILE=thorough pytest ...
settings.register_profile("suite", max_examples=25)
settings.register_profile("thorough", max_examples=1000)
settings.load_profile(os.environ.get("DATAPIPE_HYPOTHESIS_PROFILE", "suite"))


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
def run_tree(isolated_registry):
    """A local run of ``test.tree``: it depends on ``flow`` (which triggers ``flow.derived``)
    and triggers ``test.tree.after``. Returns the root run; four runs in all."""
    from datapipe.models import PipelineRun
    from tests.testapp.models import SourceItem

    @pipeline("test.tree")
    class Tree(Pipe):
        depends = ["flow"]

    @pipeline("test.tree.after", trigger="test.tree")
    class After(Pipe):
        pass

    assert registry.depends_of("test.tree") == ["flow"]
    assert registry.triggers_of("flow") == ["flow.derived"]
    SourceItem.objects.bulk_create([SourceItem(number=n) for n in (1, 2, 3)])
    get_session(progress=False).run(SourceItem.objects.all(), "test.tree")
    return PipelineRun.objects.roots().get()


@pytest.fixture
def postgres_only():
    """For a test that needs PostgreSQL; such tests are left out of the SQLite run."""
    require(connection.vendor == "postgresql", "needs PostgreSQL (set DATABASE_URL)")


# Tests using these fixtures need PostgreSQL (Celery workers share the test database).
POSTGRESQL_FIXTURES = {
    "postgres_only", "celery_worker", "start_worker", "celery_queue", "postgres_demo_env",
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "postgresql: needs PostgreSQL; deselected (not skipped) in the SQLite run"
    )
    config.addinivalue_line(
        "markers", "slow: a fault test (servers stopped, workers killed); part of the suite"
    )


def pytest_collection_modifyitems(config, items):
    """On SQLite, deselect what needs PostgreSQL: it runs in the PostgreSQL run instead."""
    from django.conf import settings

    if "postgresql" in settings.DATABASES["default"]["ENGINE"]:
        return
    keep, drop = [], []
    for item in items:
        needs_postgresql = item.get_closest_marker("postgresql") or (
            POSTGRESQL_FIXTURES & set(getattr(item, "fixturenames", ()))
        )
        (drop if needs_postgresql else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


from tests.io_servers import http_files, s3_server  # noqa: E402,F401  (file servers)
from tests.runners import runner  # noqa: E402,F401  (local and Celery runs)
from tests.workers import celery_queue, celery_worker, start_worker  # noqa: E402,F401  (Celery fixtures)
