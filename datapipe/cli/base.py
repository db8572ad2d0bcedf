"""What every subcommand of ``manage.py datapipe`` shares: the :class:`Subcommand` base
class, the exit statuses, printing (escaped text, one JSON document) and small helpers.

Exit statuses, the same for every subcommand:

* 0: done;
* 1: done, but something failed: a run ended with errored items (unless
  ``--allow-errors``) or failed, nothing to resend, no error row matched
  (:class:`CommandFailed`);
* 2: a usage error: bad arguments, an unknown pipeline, model, run or object
  (:class:`UsageError`). One line on stderr, no traceback (``--traceback`` shows it).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any, ClassVar

from django.core.management.base import CommandError

__all__ = [
    "CommandFailed", "Subcommand", "UsageError", "add_common_options", "json_text", "printable",
    "seconds", "table",
]

# Terminal control characters (but newline and tab) and lone surrogates: shown escaped,
# so that text from the data (an exception message) cannot drive the terminal.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class UsageError(CommandError):
    """A mistake in the command line (exit status 2)."""

    def __init__(self, message: str):
        super().__init__(message, returncode=2)


class CommandFailed(CommandError):
    """The command did what it was asked, and what it ran failed (exit status 1)."""

    def __init__(self, message: str):
        super().__init__(message, returncode=1)


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped (``\\x1b``)."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def json_text(document: Any) -> str:
    """``document`` as indented JSON made of printable ASCII only (every other character
    escaped as ``\\uXXXX``), so that no character of the data drives the terminal."""
    return json.dumps(document, indent=2, ensure_ascii=True, default=str).replace(
        "\x7f", "\\u007f")  # the one control character that ensure_ascii leaves


def seconds(value: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(value)
    return number


def table(headers: list[str], rows: list[list]) -> str:
    """``rows`` as text columns under ``headers``."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def add_common_options(parser) -> None:
    """Django's common options, accepted after the subcommand too (``datapipe list -v 0``).

    Their defaults are suppressed, so that given before the subcommand (where Django's
    own parser reads them) they are not overwritten by the subcommand's defaults.
    """
    group = parser.add_argument_group("Django's common options")
    common = {"default": argparse.SUPPRESS}
    group.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3], **common,
                       help="Verbosity level; 0=minimal output, 1=normal output, "
                            "2=verbose output, 3=very verbose output.")
    group.add_argument("--settings", **common,
                       help="The Python path to a settings module, e.g. "
                            '"myproject.settings.main".')
    group.add_argument("--pythonpath", **common,
                       help='A directory to add to the Python path, e.g. "/home/projects".')
    group.add_argument("--traceback", action="store_true", **common,
                       help="Raise on CommandError exceptions.")
    group.add_argument("--no-color", action="store_true", **common,
                       help="Don't colorize the command output.")
    group.add_argument("--force-color", action="store_true", **common,
                       help="Force colorization of the command output.")


class Subcommand:
    """One subcommand of ``manage.py datapipe``: subclass it in a module of
    :mod:`datapipe.cli` and list the class in :data:`datapipe.cli.SUBCOMMANDS`.

    A subcommand either overrides :meth:`handle`, or sets ``json = True`` and implements
    :meth:`document` (what to show, as JSON-encodable data) and :meth:`render` (that
    document as text): ``--json`` then prints the document, and the text and the JSON
    can never disagree. Raise :class:`UsageError` or :class:`CommandFailed` to end with exit
    status 2 or 1.
    """

    #: The subcommand's name on the command line.
    name: ClassVar[str]
    #: One line, shown in the list of subcommands (``manage.py datapipe --help``).
    help: ClassVar[str]
    #: A paragraph, shown by ``manage.py datapipe NAME --help``.
    description: ClassVar[str]
    #: Whether the subcommand takes ``--json`` (then implement document and render).
    json: ClassVar[bool] = False

    def __init__(self, command):
        self.command = command  # the BaseCommand: its stdout and stderr

    @classmethod
    def add_arguments(cls, parser) -> None:
        """Add the subcommand's own arguments to its ``argparse`` parser."""

    def handle(self, **options) -> None:
        """Do the subcommand's work with the parsed ``options``."""
        document = self.document(**options)
        if options.get("json"):
            self.command.stdout.write(json_text(document))
        else:
            self.render(document, **options)

    def document(self, **options) -> Any:
        """What the subcommand shows, as JSON-encodable data (``json = True`` only)."""
        raise NotImplementedError

    def render(self, document, **options) -> None:
        """Print ``document`` as text (``json = True`` only)."""
        raise NotImplementedError

    def say(self, text: str = "") -> None:
        """Print one line (or several) of text on stdout, control characters escaped."""
        self.command.stdout.write(printable(text))

    @property
    def stderr(self):
        """The raw stderr stream (for progress bars; Django's wrapper adds newlines)."""
        return self.command.stderr._out
