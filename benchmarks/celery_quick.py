"""Items/s of a distributed run (one worker, 2 pool processes) versus a local run.

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://... \\
        python -m benchmarks.celery_quick [--items 100000] [--chunksize 500]

Uses the test project (``tests.settings``, ``tests.celery_app``) on the database of
``DATABASE_URL`` (migrated here, its SourceItem/ResultItem tables emptied), runs the
pipeline locally, then through Celery, and prints both rates.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--chunksize", type=int, default=500, help="items per Celery chunk")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pipeline", default="flow.untracked",
                        help="flow.untracked (default) or flow (with reparse tracking)")
    args = parser.parse_args(argv)
    if not os.environ.get("DATABASE_URL") or not os.environ.get("CELERY_BROKER_URL"):
        sys.exit("Set DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis).")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from datapipe import get_session
    from datapipe.models import PipelineError, PipelineTrack
    from tests.testapp.models import Derived, ResultItem, SourceItem
    from tests.workers import Worker

    def reset():
        for model in (Derived, ResultItem, PipelineTrack, PipelineError):
            model.objects.all().delete()

    reset()
    SourceItem.objects.all().delete()
    SourceItem.objects.bulk_create(SourceItem(number=n % 100) for n in range(args.items))
    session = get_session(progress=False)

    started = time.monotonic()
    report = session.run(SourceItem.objects.all(), args.pipeline)
    local = time.monotonic() - started
    print(f"{args.pipeline}, {args.items} rows, PostgreSQL", flush=True)
    rate = report.processed / local
    print(f"local:  {report.processed} items in {local:.1f}s = {rate:,.0f}/s", flush=True)

    reset()
    worker = Worker("datapipe-bench", args.concurrency, database_url=os.environ["DATABASE_URL"])
    worker.start()
    try:
        started = time.monotonic()
        handle = session.run_in_celery(
            SourceItem.objects.all(), args.pipeline, celery_chunksize=args.chunksize,
            queue=worker.queue,
        )
        run = handle.wait(timeout=3600)
        took = time.monotonic() - started
    finally:
        worker.stop()
    outputs = ResultItem.objects.count()
    print(
        f"celery: {run.processed} items in {took:.1f}s = {run.processed / took:,.0f}/s "
        f"({args.concurrency} worker processes, chunks of {args.chunksize}, "
        f"{run.chunks_total} chunks, {outputs} outputs)"
    )


if __name__ == "__main__":
    main()
