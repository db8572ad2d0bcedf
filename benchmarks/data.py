"""The benchmark's rows: SourceItems in, ResultItems (and datapipe's own rows) out."""

from __future__ import annotations

from django.core.management.color import no_style
from django.db import connection

from datapipe.models import PipelineError, PipelineRun, PipelineTrack
from tests.testapp.models import Derived, Note, ResultItem, SourceItem

# Everything a scenario writes; emptied before each measured run.
OUTPUT_MODELS = (Note, Derived, ResultItem, PipelineTrack, PipelineError, PipelineRun)

_BATCH = 5000


def seed(count: int) -> None:
    """Make the SourceItem table hold exactly ``count`` rows (untouched when it does)."""
    if SourceItem.objects.count() == count:
        return
    reset_outputs()
    _flush([SourceItem])
    if connection.vendor == "postgresql":
        # generate_series: a million rows in seconds, without Python objects.
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {connection.ops.quote_name(SourceItem._meta.db_table)} "
                "(number, behaviour, touched) "
                "SELECT g %% 1000, 'ok', 0 FROM generate_series(1, %s) AS g",
                [count],
            )
    else:
        for start in range(0, count, _BATCH):
            SourceItem.objects.bulk_create(
                SourceItem(number=n % 1000) for n in range(start, min(start + _BATCH, count))
            )
    _vacuum([SourceItem])


def reset_outputs() -> None:
    """Empty the output tables, so that every measured run starts from the same state."""
    _flush(OUTPUT_MODELS)
    _vacuum([SourceItem, *OUTPUT_MODELS])


def count_outputs() -> int:
    """How many ResultItems the last scenario wrote."""
    return ResultItem.objects.count()


def _flush(models) -> None:
    tables = [model._meta.db_table for model in models]
    statements = connection.ops.sql_flush(no_style(), tables, allow_cascade=True)
    connection.ops.execute_sql_flush(statements)


def _vacuum(models) -> None:
    # Fresh statistics and no dead rows left by the previous run (UPDATEs of scenario 4).
    if connection.vendor != "postgresql":
        return
    tables = ", ".join(connection.ops.quote_name(model._meta.db_table) for model in models)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {tables}")
