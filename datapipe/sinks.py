"""Data out: a pipe's results written to files, after its run commits.

.. code-block:: python

    @pipeline("airports.export")
    class Export(Pipe):
        sink = JSONLines("exports/{pipeline}-{run_id}.jsonl")   # or CSV(...), or a list

The results the run collects (what ``process()`` returns: dicts, records, model
instances as their field values) are written once the run's transaction has committed
(``transaction.on_commit``): a run rolled back, or a dry run, writes nothing. Each file
is written whole under a temporary name and then renamed into place (local files), or
uploaded finished (any other fsspec URL: ``s3://``, ...): a finished file appears, or
none. ``{pipeline}``, ``{run_id}`` and ``{date}`` (the run's start, ``YYYY-MM-DD``) in
the location are replaced; ``.gz``, ``.bz2``, ``.xz`` compress by extension. The
locations written go on the run record (``PipelineRun.locations``), shown in the admin.

A write that fails fails the run (its message names the location), never its items:
their outputs are committed. A Celery run writes **one file per run**, after its last
chunk, from the results its chunks stored; a run with failed chunks writes none.
Results are held until written (in memory locally, on the chunk rows in Celery).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Model

from .exceptions import SinkError
from .sources.files import check_url, fsspec, protocol_of

__all__ = ["CSV", "JSONLines", "Sink", "deliver", "sinks_of", "write_sinks"]


def as_row(result: Any) -> dict:
    """A result as a dict of fields: a model instance as its concrete fields' values
    (foreign keys as primary keys), a dict (a record) as it is."""
    if isinstance(result, Model):
        return {field.name: field.value_from_object(result)
                for field in result._meta.concrete_fields}
    if isinstance(result, dict):
        return result
    raise TypeError(f"a sink writes dicts and model instances, not {type(result).__name__}")


class Sink:
    """Writes a run's results to one file at ``location`` (an fsspec URL template).

    ``storage_options`` go to fsspec (credentials, ``endpoint_url`` ...). Subclasses
    write the rows: :meth:`write_rows`.
    """

    def __init__(self, location: str, *, encoding: str = "utf-8",
                 storage_options: dict | None = None):
        if not isinstance(location, str) or not location:
            raise TypeError(f"a sink's location must be a URL or a path, not {location!r}")
        self.location = location
        self.encoding = encoding
        self.storage_options = storage_options or {}

    def __repr__(self):
        return f"{type(self).__name__}({self.location!r})"

    def location_for(self, run) -> str:
        """The location of ``run``'s file: the template's fields replaced."""
        try:
            return self.location.format(pipeline=run.pipeline_name, run_id=run.pk,
                                        date=run.started_at.date().isoformat())
        except (KeyError, IndexError, ValueError) as exc:
            raise SinkError(f"sink location {self.location!r}: {exc!r} (the fields are "
                            "{pipeline}, {run_id} and {date})") from None

    def write(self, results: Iterable, run) -> str:
        """Write ``results`` to the run's location, whole or not at all; return it."""
        location = self.location_for(run)
        try:
            check_url(location)
        except Exception as exc:
            raise SinkError(f"sink {location}: {exc}") from None
        if protocol_of(location) == "file":
            self._write_local(location, results)
        else:
            self._upload(location, results)
        return location

    def write_rows(self, rows: Iterator[dict], file) -> None:
        """Write ``rows`` (dicts) to ``file``, a text file open for writing."""
        raise NotImplementedError

    def _write_to(self, path: str, results: Iterable, location: str) -> None:
        compression = fsspec().utils.infer_compression(location)
        with fsspec().open(path, "wt", compression=compression, encoding=self.encoding,
                           newline="") as file:
            self.write_rows(self._rows(results, location), file)

    def _rows(self, results: Iterable, location: str) -> Iterator[dict]:
        for position, result in enumerate(results, 1):
            try:
                yield as_row(result)
            except TypeError as exc:
                raise SinkError(f"sink {location}: result {position}: {exc}") from None

    def _write_local(self, location: str, results: Iterable) -> None:
        path = os.path.abspath(location.removeprefix("file://"))
        folder, name = os.path.split(path)
        temporary = None
        try:
            os.makedirs(folder, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            os.close(handle)
            self._write_to(temporary, results, location)
            os.replace(temporary, path)
            temporary = None
        except SinkError:
            raise
        except Exception as exc:
            raise SinkError(f"sink {location}: cannot be written: {_described(exc)}") from exc
        finally:
            if temporary is not None and os.path.exists(temporary):
                os.remove(temporary)

    def _upload(self, location: str, results: Iterable) -> None:
        handle, temporary = tempfile.mkstemp(prefix="datapipe-sink-", suffix=".tmp")
        os.close(handle)
        try:
            self._write_to(temporary, results, location)
            fs, path = fsspec().core.url_to_fs(location, **self.storage_options)
            fs.put_file(temporary, path)
        except SinkError:
            raise
        except Exception as exc:
            raise SinkError(f"sink {location}: cannot be written: {_described(exc)}") from exc
        finally:
            os.remove(temporary)


class JSONLines(Sink):
    """One JSON object per result and line (dates, decimals, UUIDs as Django's JSON
    encoder writes them)."""

    def write_rows(self, rows, file) -> None:
        encoder = DjangoJSONEncoder(ensure_ascii=False)
        for row in rows:
            file.write(encoder.encode(row))
            file.write("\n")


class CSV(Sink):
    """A header line, then one line per result. ``fields``: the columns (default: the
    first result's fields); a later result with other fields fails the write, unless
    ``extra="ignore"``. Lists and dicts are written as JSON text, None as empty."""

    def __init__(self, location: str, *, fields: list[str] | None = None, extra: str = "raise",
                 **options):
        if extra not in ("raise", "ignore"):
            raise ValueError(f"extra must be 'raise' or 'ignore', not {extra!r}")
        self.fields = list(fields) if fields is not None else None
        self.extra = extra
        self.csv_options = {name: options.pop(name) for name in list(options)
                            if name in ("delimiter", "quotechar", "lineterminator", "quoting")}
        super().__init__(location, **options)

    def write_rows(self, rows, file) -> None:
        writer = None
        for position, row in enumerate(rows, 1):
            if writer is None:
                writer = csv.DictWriter(file, self.fields or list(row), extrasaction=self.extra,
                                        **self.csv_options)
                writer.writeheader()
            try:
                writer.writerow({name: _cell(value) for name, value in row.items()})
            except ValueError as exc:
                raise SinkError(f"sink {self.location}: result {position}: {exc}") from None
        if writer is None and self.fields:
            csv.DictWriter(file, self.fields, **self.csv_options).writeheader()


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
    return value


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def sinks_of(cls) -> list[Sink]:
    """The sinks of a pipeline class: its ``sink`` attribute (a sink or a list)."""
    declared = getattr(cls, "sink", None)
    if declared is None:
        return []
    sinks = list(declared) if isinstance(declared, (list, tuple)) else [declared]
    for sink in sinks:
        if not isinstance(sink, Sink):
            raise TypeError(f"{cls.__qualname__}.sink must be a datapipe.sinks.Sink (JSONLines, "
                            f"CSV) or a list of them, not {sink!r}")
    return sinks


def write_sinks(sinks: list[Sink], results: Callable[[], Iterable], run) -> list[str]:
    """Write each sink's file (``results()`` gives the results anew for each); record the
    locations on ``run``; return them. :class:`SinkError` when one cannot be written."""
    locations = [sink.write(results(), run) for sink in sinks]
    type(run).objects.using(run._state.db).filter(pk=run.pk).update(locations=locations)
    run.locations = locations
    return locations


def deliver(cls, results: list, run, using: str) -> str | None:
    """Write the sinks of the pipeline ``cls`` once the run's transaction commits.

    Outside any transaction that is now: the failure's message is returned (None when
    all went well). Inside a caller's ``atomic()``, at its commit: a failure then marks
    the run failed itself. A rollback writes nothing.
    """
    sinks = sinks_of(cls)
    if not sinks:
        return None
    failure: list[str] = []

    def write():
        try:
            write_sinks(sinks, lambda: results, run)
        except SinkError as exc:
            failure.append(str(exc))
            if deferred:
                run.set_outcome(run.Status.FAILED, str(exc))

    deferred = transaction.get_connection(using).in_atomic_block
    transaction.on_commit(write, using=using)
    return failure[0] if failure else None
