"""``python -m benchmarks.io [--rows N] [--small N] [--output FILE]``.

Data in and out: ``read_csv`` of a ``--rows``-row file (1,000,000), keyed, into a
pipeline saving one output per record, in a fresh process each (rows/s, peak RSS), and
the same at ``--small`` rows (10,000): memory is flat when the peak RSS at 1M is at most
the peak at 10k + 30 MiB. Then a lookup over 100,000 items with 1,000 distinct keys
behind a ``Function`` tier that sleeps 1 ms per call: calls and seconds, item by item
(``get``) and a batch of 2,000 at a time (``get_many``). Prints the markdown report and
writes it to ``--output`` (``benchmarks/IO.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINE = "benchmarks.io.read_csv"


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.io")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big file")
    parser.add_argument("--small", type=int, default=10_000, help="rows of the small file")
    parser.add_argument("--output", type=Path, default=HERE / "IO.md", help="file written")
    parser.add_argument("--child", nargs=2, metavar=("CSV", "ROWS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def write_csv(path: Path, rows: int) -> None:
    with open(path, "w") as file:
        file.write("code,n\n")
        for n in range(rows):
            file.write(f"K{n:07d},{n}\n")


def child(path: str, rows: int) -> dict:
    """One run of the pipeline over the file, in this (fresh) process."""
    from datapipe import Pipe, get_session, pipeline
    from datapipe.models import PipelineTrack
    from datapipe.sources import read_csv
    from tests.testapp.models import ResultItem

    from .child import peak_rss_kib

    @pipeline(PIPELINE)
    class ReadCSV(Pipe):
        def process(self):
            row = super().process()
            self.add_to_save(ResultItem(number=int(row["n"])))
            return row

    ResultItem.objects.all().delete()
    PipelineTrack.objects.filter(pipeline_name=PIPELINE).delete()
    baseline = peak_rss_kib()
    started = time.perf_counter()
    report = get_session(progress=False).run(read_csv(path, key="code"), PIPELINE)
    seconds = time.perf_counter() - started
    assert report.succeeded == rows, report
    return {"rows": rows, "seconds": seconds, "peak_rss_kib": peak_rss_kib(),
            "baseline_rss_kib": baseline}


def measure_read(rows: int, folder: Path) -> dict:
    path = folder / f"rows-{rows}.csv"
    write_csv(path, rows)
    out = subprocess.run([sys.executable, "-m", "benchmarks.io", "--child", str(path), str(rows)],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr)
    path.unlink()
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_lookups(items: int = 100_000, keys: int = 1000, batch: int = 2000) -> list[dict]:
    from datapipe.lookups import Function, Lookup, Memory

    random.seed(14)
    wanted = [random.randrange(keys) for _ in range(items)]
    results = []
    for way in ("get", "get_many"):
        calls = [0]

        def fetch(missing, calls=calls):
            calls[0] += 1
            time.sleep(0.001)
            return {key: key * 2 for key in missing}

        lookup = Lookup("bench", tiers=[Memory(), Function(fetch)])
        started = time.perf_counter()
        if way == "get":
            for key in wanted:
                lookup.get(key)
        else:
            for start in range(0, items, batch):
                lookup.get_many(wanted[start:start + batch])
        results.append({"way": way, "calls": calls[0], "seconds": time.perf_counter() - started})
    return results


def report(small: dict, big: dict, lookups: list[dict], machine: dict) -> str:
    mib = 1024
    flat = big["peak_rss_kib"] <= small["peak_rss_kib"] + 30 * mib
    lines = [
        "# Data in and out, measured",
        "",
        "Made by `python -m benchmarks.io` (see its docstring). Machine: "
        + ", ".join(f"{k} {v}" for k, v in machine.items()) + ".",
        "",
        "## read_csv into a one-output pipeline (keyed records, reparse on)",
        "",
        "| rows | seconds | rows/s | peak RSS (MiB) |",
        "|---:|---:|---:|---:|",
    ]
    for run in (small, big):
        lines.append(f"| {run['rows']:,} | {run['seconds']:.1f} | "
                     f"{run['rows'] / run['seconds']:,.0f} | {run['peak_rss_kib'] / mib:.1f} |")
    lines += [
        "",
        f"Peak RSS at {big['rows']:,} rows minus at {small['rows']:,}: "
        f"{(big['peak_rss_kib'] - small['peak_rss_kib']) / mib:.1f} MiB "
        f"({'flat: within' if flat else 'NOT flat: over'} the 30 MiB bound).",
        "",
        "## A lookup over 100,000 items, 1,000 distinct keys, Function tier at 1 ms a call",
        "",
        "Tiers: `Memory()`, then `Function(fetch)`.",
        "",
        "| way | calls to the function | seconds |",
        "|---|---:|---:|",
    ]
    for row in lookups:
        lines.append(f"| `{row['way']}` | {row['calls']:,} | {row['seconds']:.2f} |")
    lines += ["", "`get` item by item calls the function once per distinct key (then the "
              "memory tier answers); `get_many` over batches of 2,000 items calls it once per "
              "batch that holds keys not seen yet.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    from django.core.management import call_command

    from .machine import describe

    call_command("migrate", verbosity=0)
    with tempfile.TemporaryDirectory() as folder:
        small = measure_read(args.small, Path(folder))
        print(f"read_csv {args.small:,} rows: {small}", file=sys.stderr)
        big = measure_read(args.rows, Path(folder))
        print(f"read_csv {args.rows:,} rows: {big}", file=sys.stderr)
    lookups = measure_lookups()
    text = report(small, big, lookups, describe())
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
