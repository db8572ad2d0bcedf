"""``python -m benchmarks [--items N] [--repeat N] [--sizes A,B] [--quick] [--thorough]``.

Seeds the SourceItem table, runs every scenario ``--repeat`` times (interleaved, each
run in a fresh process on emptied output tables: every run is a first run), then the
datapipe scenarios ``--repeat`` times at each of ``--sizes`` (items/s and peak RSS by
size); with ``--thorough``, the reparse property test with 1,000 examples. Prints the
markdown report and writes it to ``--output`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument(
        "--items", type=int, default=100_000, help="items per scenario run (100000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per scenario; the median is reported (3)"
    )
    parser.add_argument(
        "--sizes",
        "--rss-sizes",
        default="10000,1000000",
        help="item counts of the runs by size, besides --items (10000,1000000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1,000 items, one run, sizes 500 and 2,000",
    )
    parser.add_argument(
        "--thorough",
        action="store_true",
        help="also run the reparse property test with 1,000 examples (about 3 minutes)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated scenario keys to run (default all)"
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "RESULTS.md", help="markdown file written"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.repeat, args.sizes = 1000, 1, "500,2000"
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    args.sizes = sorted({args.items, *sizes})
    return args


def run_child(key: str) -> dict:
    """Run scenario ``key`` in a fresh process; its JSON line."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.child", key],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(key: str, measured, label: str) -> None:
    from .data import reset_outputs

    reset_outputs()
    run = run_child(key)
    measured.rates.append(run["processed"] / run["seconds"])
    measured.peak_rss_kib.append(run["peak_rss_kib"])
    print(
        f"  {label}: {run['processed'] / run['seconds']:,.0f} items/s, "
        f"peak RSS {run['peak_rss_kib'] / 1024:.1f} MiB",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from .data import reset_outputs, seed
    from .machine import describe
    from .report import SIZE_SCENARIOS, Measured, markdown
    from .scenarios import SCENARIOS, celery_available
    from .thorough import property_test
    from .workers import celery_workers

    call_command("migrate", verbosity=0)
    celery = celery_available()
    keys = [key for key in SCENARIOS if key != "celery" or celery]
    if args.only:
        keys = [key for key in keys if key in args.only.split(",")]
    results = {key: Measured(args.items) for key in keys}
    by_size = {(key, size): Measured(size) for key in SIZE_SCENARIOS if key in keys
               for size in args.sizes if size != args.items}
    with celery_workers(enabled="celery" in keys):
        seed(args.items)
        for repetition in range(1, args.repeat + 1):
            for key in keys:
                measure(key, results[key],
                        f"run {repetition}/{args.repeat}, {key}, {args.items:,} items")
        for size in sorted({size for _, size in by_size}):
            seed(size)
            for repetition in range(1, args.repeat + 1):
                for key, at in by_size:
                    if at == size:
                        measure(key, by_size[key, size],
                                f"run {repetition}/{args.repeat}, {key}, {size:,} items")
    for key in SIZE_SCENARIOS:
        if key in results:
            by_size[key, args.items] = results[key]
    reset_outputs()
    thorough = property_test() if args.thorough else None
    command = os.environ.get("BENCHMARKS_COMMAND") or "python -m benchmarks"
    command = " ".join([command, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    text = markdown(results, by_size, describe(), command, args.repeat, celery, args.items,
                    thorough)
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
