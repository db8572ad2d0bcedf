"""The scenarios: each writes one ResultItem per SourceItem, in one transaction.

Each scenario function processes every SourceItem and returns how many it processed.
Reading the items is part of every scenario, so that they compare like for like.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

from datapipe import get_session
from tests.testapp.models import ResultItem, SourceItem

CHUNKSIZE = 2000  # datapipe's default: keyset page and bulk-insert batch
CELERY_CHUNKSIZE = 1000
CELERY_WORKERS = 2


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    run: Callable[[], int] | None


def _items():
    return SourceItem.objects.order_by("pk").iterator(chunk_size=CHUNKSIZE)


def datapipe_local() -> int:
    report = get_session(progress=False).run(SourceItem.objects.all(), "benchmarks.outputs")
    _check(report)
    return report.processed


def naive_loop() -> int:
    count = 0
    with transaction.atomic():
        for item in _items():
            with transaction.atomic():
                ResultItem.objects.create(source=item, number=item.number)
            count += 1
    return count


def raw_bulk_create() -> int:
    count = 0
    batch: list[ResultItem] = []
    with transaction.atomic():
        for item in _items():
            batch.append(ResultItem(source=item, number=item.number))
            if len(batch) == CHUNKSIZE:
                ResultItem.objects.bulk_create(batch)
                count += len(batch)
                batch = []
        ResultItem.objects.bulk_create(batch)
    return count + len(batch)


def datapipe_with_update() -> int:
    report = get_session(progress=False).run(
        SourceItem.objects.all(), "benchmarks.outputs_and_update"
    )
    _check(report)
    return report.processed


def datapipe_with_buffered_update() -> int:
    report = get_session(progress=False).run(
        SourceItem.objects.all(), "benchmarks.outputs_and_buffered_update"
    )
    _check(report)
    return report.processed


def datapipe_celery() -> int:
    from .celery_app import QUEUE

    handle = get_session(progress=False).run_in_celery(
        SourceItem.objects.all(),
        "benchmarks.outputs",
        celery_chunksize=CELERY_CHUNKSIZE,
        queue=QUEUE,
    )
    record = handle.wait(timeout=3600)
    if record.errored or record.status != "done":
        raise RuntimeError(
            f"the Celery run did not succeed: {record.status}, {record.errored} errored"
        )
    return record.processed


def celery_available() -> bool:
    """Whether scenario 5 can run: datapipe.distributed, PostgreSQL and a broker."""
    from django.conf import settings

    return bool(
        importlib.util.find_spec("datapipe.distributed")
        and connection.vendor == "postgresql"  # workers cannot share a SQLite file safely
        and getattr(settings, "CELERY_BROKER_URL", "")
    )


def _check(report) -> None:
    if report.errored or report.ignored or report.broke:
        raise RuntimeError(f"the benchmark run did not succeed on every item: {report}")


SCENARIOS = {
    s.key: s
    for s in [
        Scenario("datapipe", "1. datapipe, local run", datapipe_local),
        Scenario("naive", "2. naive loop: atomic() + create() per item", naive_loop),
        Scenario("bulk_create", "3. raw bulk_create", raw_bulk_create),
        Scenario(
            "datapipe_update", "4. datapipe, process() UPDATEs the item by a query",
            datapipe_with_update,
        ),
        Scenario(
            "datapipe_add_to_update",
            "4b. datapipe, process() updates the item with add_to_update",
            datapipe_with_buffered_update,
        ),
        Scenario(
            "celery",
            f"5. datapipe in Celery, {CELERY_WORKERS} workers, chunks of {CELERY_CHUNKSIZE:,}",
            datapipe_celery,
        ),
    ]
}
