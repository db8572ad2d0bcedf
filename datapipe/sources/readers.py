"""Readers: CSV, JSON lines and JSON arrays from any fsspec URL, streamed as records.

``read_csv(url, key="iata")`` returns an iterable of :class:`~.records.Record`: hand it
to ``run()`` or ``run_in_celery()``. The file is opened when the run iterates it (and
again at each iteration), read a block at a time: memory stays flat however long it
is. The URL's scheme is checked at once.

With ``key=`` (a field name, or a function of the record's fields) each record has an
identity: reparse replaces its outputs record by record when a changed file is imported
again, and its error row names it. A key that appears twice in one file: **the last
record wins** (its processing replaces the outputs of the earlier one, as a re-run
would). A line that cannot be read (malformed, or without its key) becomes an item that
fails with :class:`~datapipe.exceptions.UnreadableRecord` naming the file and its line;
the others are processed. A file that cannot be opened, or whose reading breaks off,
raises :class:`~datapipe.exceptions.SourceError` (the run fails, naming the URL).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from typing import Any

from ..exceptions import SourceError
from .files import check_url, open_text, read_failed
from .records import KEY_MAX, Record, Unreadable, key_text

__all__ = ["Reader", "read_csv", "read_json", "read_jsonl"]

Key = str | Callable[[dict], Any] | None

#: Characters read at a time from a JSON array.
BLOCK = 1 << 16


class Reader:
    """The records of one file, read anew at each iteration (see the module docstring)."""

    format = ""
    #: Whether options beyond ``encoding`` and ``storage_options`` are accepted (CSV).
    takes_options = False

    def __init__(self, url: str, key: Key = None, *, encoding: str = "utf-8",
                 storage_options: dict | None = None, **options):
        if key is not None and not (isinstance(key, str) or callable(key)):
            raise TypeError(f"key must be a field name or a function, not {key!r}")
        if options and not self.takes_options:
            raise TypeError(f"{type(self).__name__} got unknown options {', '.join(options)}")
        self.url = check_url(url)
        self.key = key
        self.encoding = encoding
        self.storage_options = storage_options
        self.options = options

    def __repr__(self):
        return f"<{type(self).__name__} {self.url} key={self.key!r}>"

    def __iter__(self) -> Iterator[Record | Unreadable]:
        line = None
        try:
            with open_text(self.url, self.encoding, self.storage_options) as text:
                for line, fields in self.parse(text):
                    yield self.record(line, fields)
        except (SourceError, GeneratorExit):
            raise
        except Exception as exc:  # the connection broke off, bytes that do not decode
            raise read_failed(self.url, exc, line) from exc

    def parse(self, text) -> Iterator[tuple[int, Any]]:
        """``(line, fields)`` of each record: a dict, or an :class:`Unreadable`."""
        raise NotImplementedError

    def record(self, line: int, fields: Any) -> Record | Unreadable:
        """The record of ``fields`` read at ``line``, with its key."""
        if isinstance(fields, Unreadable):
            return fields
        if self.key is None:
            return Record(fields, source=self.url, line=line)
        problem = None
        if callable(self.key):
            try:
                key = self.key(fields)
            except Exception as exc:
                key, problem = None, f"the key function raised {type(exc).__name__}: {exc}"
        else:
            key = fields.get(self.key)
            if self.key not in fields:
                problem = f"no field {self.key!r} (the key)"
        if problem is None:
            problem = _key_problem(key)
        if problem is not None:
            return Unreadable(self.url, line, problem)
        return Record(fields, key=key, source=self.url, line=line)

    def unreadable(self, line: int, message: str, text: str = "") -> Unreadable:
        """The item of a line of this file that cannot be read."""
        return Unreadable(self.url, line, message, text)


class CSVReader(Reader):
    """The rows of a CSV file as records; the first line is the header."""

    format = "csv"
    takes_options = True

    def parse(self, text):
        rows = csv.reader(text, **self.options)
        try:
            header = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(f"{self.url}, line 1: the header cannot be read: {exc}") from None
        if isinstance(self.key, str) and self.key not in header:
            raise SourceError(f"{self.url}: the header has no field {self.key!r} (the key); "
                              f"it has {', '.join(map(repr, header))}")
        width = len(header)
        line = rows.line_num + 1
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as exc:
                yield line, self.unreadable(line, f"malformed CSV: {exc}")
                line = rows.line_num + 1
                continue
            if row and len(row) != width:
                yield line, self.unreadable(
                    line, f"{len(row)} fields where the header has {width}", ",".join(row))
            elif row:
                yield line, dict(zip(header, row, strict=True))
            line = rows.line_num + 1


class JSONLinesReader(Reader):
    """One JSON object per line; blank lines are skipped."""

    format = "jsonl"

    def parse(self, text):
        for line, raw in enumerate(text, 1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError as exc:
                yield line, self.unreadable(line, f"malformed JSON: {exc}", raw)
                continue
            if not isinstance(value, dict):
                yield line, self.unreadable(
                    line, f"a JSON {type(value).__name__}, not an object", raw)
            else:
                yield line, value


class JSONReader(Reader):
    """The elements of a top-level JSON array, decoded one at a time (never the whole
    file at once). An element that is not an object is an unreadable record; broken
    JSON stops the reading with :class:`SourceError` naming its line."""

    format = "json"

    def parse(self, text):
        decoder = json.JSONDecoder()
        buffer, position, line, done = "", 0, 1, False

        def more():
            nonlocal buffer, position, done
            block = text.read(BLOCK)
            done = not block
            buffer = buffer[position:] + block
            position = 0
            return not done

        def skip_space():
            nonlocal position, line
            while True:
                start = position
                while position < len(buffer) and buffer[position] in " \t\r\n":
                    position += 1
                line += buffer.count("\n", start, position)
                if position < len(buffer) or not more():
                    return buffer[position:position + 1]

        if skip_space() != "[":
            raise SourceError(f"{self.url}, line {line}: not a JSON array (read_json reads a "
                              "top-level array; use read_jsonl for one object per line)")
        position += 1
        if skip_space() == "]":
            return
        while True:
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, position)
                except ValueError as exc:
                    if not done and more():
                        continue
                    raise SourceError(f"{self.url}, line {line}: malformed JSON: {exc}") \
                        from None
                if end == len(buffer) and not done and more():
                    continue  # a number may go on in the next block
                break
            start_line = line
            line += buffer.count("\n", position, end)
            position = end
            if isinstance(value, dict):
                yield start_line, value
            else:
                yield start_line, self.unreadable(
                    start_line, f"a JSON {type(value).__name__}, not an object")
            separator = skip_space()
            position += 1
            if separator == "]":
                return
            if separator != ",":
                raise SourceError(f"{self.url}, line {line}: malformed JSON: expected ',' or "
                                  f"']' after an element, found {separator or 'the end'!r}")
            skip_space()


def _key_problem(key: Any) -> str | None:
    if key is None or key == "":
        return "an empty key"
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        return f"a key of type {type(key).__name__} (a key is text or an integer)"
    if len(key_text(key)) > KEY_MAX:
        return f"a key longer than {KEY_MAX} characters"
    return None


def read_csv(url: str, key: Key = None, **options) -> Reader:
    """The rows of the CSV file at ``url`` as records (dicts of text), the first line
    being the header. ``key``: a field name or a function of the fields giving each
    record's identity. ``encoding`` (default utf-8) and ``storage_options`` (fsspec's)
    are the reader's; other options go to :func:`csv.reader` (``delimiter``, ...)."""
    return CSVReader(url, key, **options)


def read_jsonl(url: str, key: Key = None, **options) -> Reader:
    """The JSON objects of the file at ``url``, one per line, as records (see
    :func:`read_csv` for ``key``, ``encoding`` and ``storage_options``)."""
    return JSONLinesReader(url, key, **options)


def read_json(url: str, key: Key = None, **options) -> Reader:
    """The objects of the top-level JSON array in the file at ``url``, as records,
    decoded one at a time (see :func:`read_csv` for the options)."""
    return JSONReader(url, key, **options)
