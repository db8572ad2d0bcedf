"""The command line: ``manage.py datapipe SUBCOMMAND [options]``.

One module per subcommand or group of subcommands, each a
:class:`~datapipe.cli.base.Subcommand` subclass listed in :data:`SUBCOMMANDS`; the
management command (``datapipe/management/commands/datapipe.py``) only hands over to
:func:`add_subcommands` and :func:`execute`. A new subcommand is one module with one
class (``json = True``, :meth:`~datapipe.cli.base.Subcommand.document` and
:meth:`~datapipe.cli.base.Subcommand.render` give it ``--json``) and one line here.
Exit statuses are those of :mod:`datapipe.cli.base`.
"""

from __future__ import annotations

from django.core.management.base import CommandError

from ..exceptions import DatapipeError, PipelineNotFound
from .base import CommandFailed, Subcommand, UsageError, add_common_options, printable
from .errors import Errors, Reprocess
from .healing import Resend, Sweep
from .lineage import Lineage
from .pipelines import ListPipelines
from .run import Run
from .schedule import Schedule
from .status import Status

__all__ = [
    "SUBCOMMANDS", "CommandFailed", "Subcommand", "UsageError", "add_subcommands", "execute",
]

#: The subcommands, in the order ``manage.py datapipe --help`` lists them.
SUBCOMMANDS: list[type[Subcommand]] = [
    ListPipelines, Run, Status, Resend, Sweep, Errors, Reprocess, Lineage, Schedule,
]


def add_subcommands(parser) -> None:
    """Add a sub-parser per subcommand to the management command's ``parser``."""
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    for cls in SUBCOMMANDS:
        subparser = sub.add_parser(cls.name, help=cls.help, description=cls.description)
        cls.add_arguments(subparser)
        if cls.json:
            subparser.add_argument("--json", action="store_true",
                                   help="Print one JSON document on stdout instead of text.")
        add_common_options(subparser)


def execute(command, subcommand: str, options: dict) -> None:
    """Run ``subcommand`` for the management ``command`` with the parsed ``options``.

    Errors about datapipe become one-line command errors, their text escaped: an
    unknown pipeline is a usage error (exit status 2), others exit with status 1.
    """
    cls = next(cls for cls in SUBCOMMANDS if cls.name == subcommand)
    try:
        cls(command).handle(**options)
    except PipelineNotFound as exc:
        raise UsageError(printable(str(exc))) from exc
    except DatapipeError as exc:  # Celery not available, broker unreachable, ...
        raise CommandFailed(printable(str(exc))) from exc
    except CommandError as exc:  # its class and exit status kept, its text escaped
        exc.args = (printable(str(exc)),)
        raise
