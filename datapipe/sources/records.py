"""Records: the items the readers yield, and the lines they could not read.

A :class:`Record` is a dict (a CSV row, a JSON object) with, when the reader was given
``key=``, a ``key``: its identity under every pipeline that processes it (trackers for
reparse, error rows, Celery chunks; see :mod:`datapipe.identity`). Keys are compared as
text: the key ``5`` and the key ``"5"`` name the same record.

An :class:`Unreadable` stands in for a line that could not be read (malformed, or
without its key): processing it raises :class:`~datapipe.exceptions.UnreadableRecord`
naming the file and the line, so the item is collected as an error while the records
around it are processed.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import UnreadableRecord

__all__ = ["KEY_MAX", "Record", "Unreadable", "key_text"]

#: The longest key text (the identity columns hold 255 characters).
KEY_MAX = 250


def key_text(key: Any) -> str:
    """The text a record's key is compared and stored as."""
    return key if isinstance(key, str) else str(key)


class Record(dict):
    """One record read from a file: its fields, and its ``key`` (None without ``key=``).

    ``source`` and ``line`` say where it was read (for messages); they do not travel
    with the record to Celery workers nor into error rows.
    """

    __slots__ = ("key", "source", "line")

    def __init__(self, fields=(), key: Any = None, source: str = "", line: int | None = None):
        super().__init__(fields)
        self.key = key
        self.source = source
        self.line = line

    def __repr__(self):
        where = f" line {self.line}" if self.line is not None else ""
        shown = f"key={self.key!r}" if self.key is not None else "no key"
        return f"<Record {shown}{where} {dict.__repr__(self)}>"

    def __reduce__(self):
        return (type(self), (dict(self), self.key, self.source, self.line))

    def as_json(self) -> list:
        """``[key, fields]``: how the record travels to a Celery worker."""
        return [self.key, dict(self)]

    @classmethod
    def from_json(cls, value: list) -> Record:
        """The record :meth:`as_json` encoded."""
        key, fields = value
        return cls(fields, key=key)


class Unreadable:
    """A line of ``source`` that could not be read; ``message`` says why."""

    __slots__ = ("source", "line", "message", "text")

    def __init__(self, source: str, line: int | None, message: str, text: str = ""):
        self.source = source
        self.line = line
        self.message = message
        self.text = text[:200]

    @property
    def place(self) -> str:
        """``"<source>, line <n>"``."""
        return f"{self.source}, line {self.line}" if self.line is not None else self.source

    def error(self) -> UnreadableRecord:
        """The exception that processing this item raises."""
        return UnreadableRecord(f"{self.place}: {self.message}")

    def __getitem__(self, name):
        raise self.error()

    def get(self, name, default=None):
        """Raises the record's error: a line that could not be read has no fields."""
        raise self.error()

    def __repr__(self):
        return f"<Unreadable {self.place}: {self.message}>"

    def as_json(self) -> dict:
        """The line as JSON (Celery chunks)."""
        return {"source": self.source, "line": self.line, "message": self.message,
                "text": self.text}

    @classmethod
    def from_json(cls, value: dict) -> Unreadable:
        """The line :meth:`as_json` encoded."""
        return cls(value["source"], value["line"], value["message"], value.get("text", ""))
