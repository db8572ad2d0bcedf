"""``python -m benchmarks.retry [--items N] [--failing N] [--backoff S]``.

``Pipe.retry`` keeps failed items waiting while the others go on: 1,000 items of which
100 fail twice (``Retry(attempts=3, backoff=0.2)``) should take about the longest wait
(0.2 + 0.4 s) plus the processing, not 100 x 0.6 s as a sleep per failing item would.
Prints the seconds, the retries done, and the ratio to the serial sleeps.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retry")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--failing", type=int, default=100, help="items failing twice")
    parser.add_argument("--backoff", type=float, default=0.2)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from datapipe import Pipe, Retry, get_session, pipeline

    call_command("migrate", verbosity=0)
    tries = Counter()
    every = max(args.items // max(args.failing, 1), 1)

    @pipeline("benchmarks.retry")
    class Flaky(Pipe):
        retry = Retry(on=TimeoutError, attempts=3, backoff=args.backoff)

        def process(self):
            tries[self.item] += 1
            if self.item % every == 0 and tries[self.item] <= 2:
                raise TimeoutError
            return self.item

    started = time.monotonic()
    report = get_session(progress=False).run(list(range(args.items)), "benchmarks.retry")
    elapsed = time.monotonic() - started
    serial = args.failing * (args.backoff + 2 * args.backoff)
    print(f"| items | failing twice | retried | errored | seconds | serial sleeps | ratio |\n"
          f"|---:|---:|---:|---:|---:|---:|---:|\n"
          f"| {args.items:,} | {args.failing} | {report.retried} | {report.errored} | "
          f"{elapsed:.2f} | {serial:.0f} | {serial / elapsed:.0f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
