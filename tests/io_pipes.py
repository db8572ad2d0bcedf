"""Pipelines of the file tests (readers, sinks), imported by the test process and by the
Celery workers: each saves one ResultItem per record (``unique_key`` the record's
``code``, ``number`` its ``n``), so a record imported twice without reparse would
break the unique constraint."""

import os
import tempfile

from datapipe import Pipe, pipeline
from datapipe.sinks import JSONLines
from tests.testapp.models import ResultItem

#: Where the Celery sink test's files go (the same folder in the workers).
EXPORTS = os.path.join(os.environ.get("DATAPIPE_TEST_OUTPUT") or tempfile.gettempdir(),
                       "io-exports")


@pipeline("io.import")
class ImportRows(Pipe):
    """One ResultItem per record; a record whose ``n`` is ``fail`` fails."""

    def process(self):
        row = super().process()
        if row["n"] == "fail":
            raise ValueError(f"cannot import {row['code']}")
        self.add_to_save(ResultItem(number=float(row["n"]), unique_key=row["code"]))
        return row


@pipeline("io.export")
class ExportRows(ImportRows):
    """``io.import``, its results written to a JSON-lines file per run."""

    sink = JSONLines(os.path.join(EXPORTS, "{pipeline}-{run_id}.jsonl"))

    def process(self):
        row = super().process()
        return {"code": row["code"], "n": float(row["n"])}
