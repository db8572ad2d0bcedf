"""One contract, two backends: ``runner`` runs a pipeline over SourceItems in this
process (``sess.run``) or in Celery chunks of 2 on a real worker (``sess.run_in_celery``
and ``wait``), and returns the run's record. The Celery half runs on PostgreSQL only."""

import pytest

from datapipe import get_session
from datapipe.models import PipelineRun
from tests.testapp.models import SourceItem

WAIT = 60


class Runner:
    """Runs a pipeline over SourceItems locally or in Celery; returns the run record."""

    def __init__(self, backend: str, queue: str | None = None):
        self.backend = backend
        self.queue = queue

    def run(self, name, items=None, select="all", **options):
        """The run record of ``name`` over ``items`` (default: every SourceItem);
        ``options`` are the session's."""
        items = SourceItem.objects.all() if items is None else items
        session = get_session(progress=False, **options)
        if self.backend == "local":
            return PipelineRun.objects.get(pk=session.run(items, name, select=select).run_id)
        handle = session.run_in_celery(items, name, celery_chunksize=2, queue=self.queue,
                                       select=select)
        return handle.wait(timeout=WAIT)


@pytest.fixture(params=["local", pytest.param("celery", marks=pytest.mark.postgresql)])
def runner(request, transactional_db):
    """A :class:`Runner`, local and then Celery (the same test, two backends)."""
    if request.param == "local":
        return Runner("local")
    return Runner("celery", request.getfixturevalue("celery_worker").queue)


