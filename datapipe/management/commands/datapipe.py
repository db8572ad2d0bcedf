"""``manage.py datapipe``: list pipelines, run them, follow runs, see and reprocess errors.

Subcommands (each in a module of :mod:`datapipe.cli`; ``datapipe NAME --help``)::

    datapipe list [--json]
    datapipe run NAME --model app.Model [--filter field=value ...] [--chunksize N]
                 [--celery [--queue Q] [--wait]] [--progress | --no-progress]
                 [--allow-errors]
    datapipe status RUN_ID [--json]
    datapipe resend RUN_ID [--stale-after SECONDS] [--queue Q]
    datapipe sweep [--stale-after SECONDS]
    datapipe errors [--pipeline P] [--all] [--json]
    datapipe reprocess (--signature S | --pipeline P | --id N) [--celery [--queue Q]]
                       [--allow-errors]
    datapipe lineage app_label.Model PK [--depth N] [--json]

Exit statuses: 0 done; 1 a run ended with errored items (unless ``--allow-errors``) or
failed, or nothing to do; 2 a usage error.
"""

from django.core.management.base import BaseCommand

from datapipe import cli


class Command(BaseCommand):
    """The ``datapipe`` management command: hands over to :mod:`datapipe.cli`."""

    help = "List and run pipelines, follow runs, list and reprocess collected errors."

    def add_arguments(self, parser):
        cli.add_subcommands(parser)

    def handle(self, *args, subcommand, **options):
        cli.execute(self, subcommand, options)
