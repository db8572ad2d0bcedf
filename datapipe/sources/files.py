"""Files and URLs opened through fsspec: local paths, ``file://``, ``http(s)://``,
``s3://`` (with the ``s3`` extra: s3fs), and whatever other file systems are installed.

fsspec is imported when a file is opened, never at import time, and a missing fsspec
(or a missing implementation, s3fs for ``s3://``) is a clear error naming the extra to
install. Every failure to open or read is a :class:`~datapipe.exceptions.SourceError`
naming the URL.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from ..exceptions import SourceError

__all__ = ["check_url", "fsspec", "open_binary", "open_text", "protocol_of"]


def fsspec():
    """The fsspec module; :class:`SourceError` naming the extra when it is missing."""
    try:
        import fsspec as module
    except ImportError:
        raise SourceError("Reading and writing files needs fsspec: pip install "
                          "'datapipe[files]' (or pip install fsspec).") from None
    return module


def protocol_of(url: str) -> str:
    """The protocol of ``url`` (``"file"`` for a plain path)."""
    protocol, _ = fsspec().core.split_protocol(str(url))
    return protocol or "file"


def check_url(url: str) -> str:
    """``url`` as text if its protocol is known and its file system installed; else
    :class:`SourceError` saying which (an unknown scheme, or the extra to install)."""
    url = str(url)
    protocol = protocol_of(url)
    try:
        fsspec().get_filesystem_class(protocol)
    except ValueError:
        known = ", ".join(sorted(p for p in fsspec().available_protocols()
                                 if p in ("file", "http", "https", "s3", "gs", "memory")))
        raise SourceError(f"{url}: unknown URL scheme {protocol!r} (known here: {known})") \
            from None
    except ImportError as exc:
        extra = " (pip install 'datapipe[s3]')" if protocol in ("s3", "s3a") else ""
        raise SourceError(f"{url}: the file system for {protocol}:// is not installed{extra}: "
                          f"{exc}") from None
    return url


def _open_kwargs(url: str, storage_options: dict | None) -> dict:
    options = dict(storage_options or {})
    if protocol_of(url) in ("http", "https"):
        options.setdefault("block_size", 0)  # streamed, not read into memory by ranges
    return options


def open_binary(url: str, storage_options: dict | None = None) -> IO[bytes]:
    """``url`` open for reading bytes, decompressed by its extension (``.gz``, ``.bz2``,
    ``.xz``, ``.zst``); :class:`SourceError` if it cannot be opened."""
    url = check_url(url)
    try:
        opened = fsspec().open(url, mode="rb", compression="infer",
                               **_open_kwargs(url, storage_options))
        return opened.open()
    except FileNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__
        # fsspec reports any failed HTTP request as a missing file: tell them apart.
        status = getattr(cause, "status", None)
        if status is not None and status != 404:
            raise SourceError(f"{url}: cannot be read: HTTP {status}: {cause}") from exc
        raise SourceError(f"{url}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{url}: is a directory, not a file") from None
    except Exception as exc:
        raise SourceError(f"{url}: cannot be read: {_described(exc)}") from exc


@contextmanager
def open_text(url: str, encoding: str = "utf-8",
              storage_options: dict | None = None) -> Iterator[IO[str]]:
    """``url`` open for reading text (universal newlines left to the parser)."""
    binary = open_binary(url, storage_options)
    try:
        yield io.TextIOWrapper(binary, encoding=encoding, newline="")
    finally:
        binary.close()


def read_failed(url: str, exc: BaseException, line: int | None = None) -> SourceError:
    """The error of a read that broke off (connection lost, undecodable bytes)."""
    where = f"{url}, line {line}" if line is not None else url
    return SourceError(f"{where}: reading stopped: {_described(exc)}")


def _described(exc: Any) -> str:
    text = str(exc) or ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
