"""Data in: records read from files and URLs (CSV, JSON lines, JSON arrays) over fsspec.

See :mod:`datapipe.sources.readers`. ``datapipe.items`` is the engine's own module of
items (QuerySets, lists); this package produces items for it.
"""

from .readers import Reader, read_csv, read_json, read_jsonl
from .records import Record, Unreadable

__all__ = ["Reader", "Record", "Unreadable", "read_csv", "read_json", "read_jsonl"]
