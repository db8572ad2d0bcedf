"""``datapipe resend`` and ``datapipe sweep``: distributed runs whose chunks failed or
stopped moving, sent again."""

from __future__ import annotations

from .base import CommandFailed, Subcommand, seconds
from .status import run_record

__all__ = ["Resend", "Sweep"]


class Resend(Subcommand):
    """``datapipe resend RUN_ID [--stale-after SECONDS] [--queue Q]``: exit status 1 when
    there is nothing to send."""

    name = "resend"
    help = "Send a run's failed and lost chunks again."
    description = ("Send a distributed run's failed and lost chunks to Celery again (exit "
                   "status 1, with the reason, when there is none). A chunk counts as lost "
                   "when its worker died; with --stale-after, also when the run did not move "
                   "for that long.")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("run_id", type=int, help="The run's id (PipelineRun).")
        parser.add_argument("--stale-after", type=seconds, metavar="SECONDS",
                            help="First mark lost the chunks of a run that did not move for "
                                 "that long, and those whose worker gave no sign of life.")
        parser.add_argument("--queue", help="Send them to this queue instead.")

    def handle(self, run_id, stale_after, queue, **options) -> None:
        from ..distributed.dispatch import resend

        run = run_record(run_id)
        sent = resend(run_id, stale_after=stale_after, queue=queue)
        if not sent:
            hint = ("" if stale_after is not None or run.status != run.Status.RUNNING else
                    "; if its chunks stopped moving, add --stale-after SECONDS")
            raise CommandFailed(f"Run {run_id} of {run.pipeline_name!r} ({run.status}) has no "
                         f"lost or failed chunk to send{hint}.")
        self.say(f"{sent} chunks of run {run_id} sent again.")


class Sweep(Subcommand):
    """``datapipe sweep [--stale-after SECONDS]``: what the periodic task does, once."""

    name = "sweep"
    help = ("Heal the distributed runs that stopped moving (what the periodic task "
            "datapipe.sweep does).")
    description = ("Send again the lost chunks of the distributed runs that stopped moving, "
                   "give up the chunks delivered too often, and end the runs whose end was "
                   "interrupted: what the periodic task datapipe.sweep does.")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--stale-after", type=seconds, metavar="SECONDS",
                            help='Instead of DATAPIPE["STALE_AFTER"].')

    def handle(self, stale_after, **options) -> None:
        from ..distributed.sweep import sweep

        self.say(f"Sweep: {sweep(stale_after)}.")
