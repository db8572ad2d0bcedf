"""``python -m benchmarks.concurrency [--items N] [--levels 1,10,50,100] [--quick]``.

What ``fetch()`` buys for I/O-bound pipes, and what it costs the others:

1. HTTP: a server that the benchmark starts on 127.0.0.1, in a child process (as a
   remote service, it does not compete for this process's interpreter lock), answers
   each request after ``--delay`` (50 ms). ``--items`` SourceItems (1,000) each fetch one
   answer and save it, at each concurrency of ``--levels``, three ways: ``async def
   fetch`` with ``httpx.AsyncClient``; ``async def fetch`` with a minimal client on
   asyncio streams (what the event loop reaches when the client costs little CPU); ``def
   fetch`` on the thread pool with ``urllib``.
2. Overhead: the no-I/O pipeline of ``python -m benchmarks`` (one buffered output per
   item) without and with a ``fetch`` override, at concurrency 1: ``--repeat`` pairs of
   runs of ``--overhead-items`` items (20,000), in alternating order; the median of the
   pairs' ratios is the throughput lost. Also the hook's own cost per item, measured
   without the database.

Prints the markdown report and writes it to ``--output`` (``benchmarks/CONCURRENCY.md``).
Uses ``DATABASE_URL`` when set, else the benchmarks' SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (what, concurrency compared with concurrency 1, at least this many times faster)
SPEED_UP_TARGET = (50, 25.0)
#: The hook's cost at concurrency 1 on the no-I/O pipeline: less than this fraction.
OVERHEAD_TARGET = 0.05


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.concurrency",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--items", type=int, default=1000, help="items of the HTTP runs (1000)")
    parser.add_argument("--levels", default="1,10,50,100",
                        help="concurrencies of the HTTP runs (1,10,50,100)")
    parser.add_argument("--delay", type=float, default=0.05,
                        help="seconds the server waits before each answer (0.05)")
    parser.add_argument("--overhead-items", type=int, default=20_000,
                        help="items of each overhead run (20000)")
    parser.add_argument("--repeat", type=int, default=15,
                        help="pairs of overhead runs, without and with fetch (15)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 40 HTTP items at 1 and 10, 2,000 overhead items, once")
    parser.add_argument("--output", type=Path, default=HERE / "CONCURRENCY.md",
                        help="markdown file written")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.levels, args.overhead_items, args.repeat = 40, "1,10", 2000, 1
    args.levels = [int(level) for level in args.levels.split(",") if level.strip()]
    return args


class ServerProcess:
    """:class:`SlowServer` in a child process (``--serve``) while the block runs; ``url``
    is its base URL."""

    def __init__(self, delay: float):
        self.command = [sys.executable, "-m", "benchmarks.concurrency", "--serve",
                        "--delay", str(delay)]
        self.url = ""

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(self.command, cwd=HERE.parent, stdout=subprocess.PIPE,
                                        text=True)
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.process.kill()
            raise RuntimeError("the benchmark's HTTP server did not start")
        return self

    def __exit__(self, *exc_info):
        self.process.terminate()
        self.process.wait(timeout=10)


def serve(delay: float) -> int:
    """The child: serve until terminated; the URL is the first line on stdout."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SlowServer(delay) as server:
        print(server.url, flush=True)
        stop.wait()
    return 0


class SlowServer:
    """An HTTP/1.1 server on 127.0.0.1 (a free port), in a thread: ``GET /<text>`` is
    answered ``<text>`` after ``delay`` seconds; connections are kept alive. ``url`` is
    its base URL once the block is entered."""

    def __init__(self, delay: float):
        self.delay = delay
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="slow-server", daemon=True)

    def __enter__(self) -> SlowServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the benchmark's HTTP server did not start")
        return self

    def __exit__(self, *exc_info):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def _serve(self) -> None:
        server = self._loop.run_until_complete(
            asyncio.start_server(self._answer, "127.0.0.1", 0, backlog=1024))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self._loop)  # connections still open
            for task in tasks:
                task.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.wait(tasks))
            self._loop.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:  # one request after the other on a kept-alive connection
                head = await reader.readuntil(b"\r\n\r\n")
                body = head.split(b" ", 2)[1].lstrip(b"/")
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        except asyncio.CancelledError:
            pass  # the server stops: end quietly (asyncio logs a handler cancelled)
        finally:
            writer.close()


def timed_run(name: str, items, **options) -> float:
    """Seconds of one run of ``name`` over ``items`` (every item must succeed)."""
    from datapipe import get_session

    from .data import count_outputs, reset_outputs

    reset_outputs()
    session = get_session(progress=False, **options)
    started = time.perf_counter()
    report = session.run(items, name)
    seconds = time.perf_counter() - started
    if report.succeeded != report.processed or count_outputs() != report.processed:
        raise RuntimeError(f"{name}: not every item succeeded: {report}")
    return seconds


#: The HTTP clients compared: pipeline (benchmarks/pipes.py) and column title.
CLIENTS = {
    "async": ("benchmarks.fetch_async", "async, httpx"),
    "streams": ("benchmarks.fetch_streams", "async, asyncio streams"),
    "threads": ("benchmarks.fetch_threads", "threads, urllib"),
}


def measure_http(args, say) -> dict[tuple[str, int], float]:
    """Items per second of each client at each concurrency."""
    from tests.testapp.models import SourceItem

    from .data import seed

    seed(args.items)
    rates = {}
    with ServerProcess(args.delay) as server:
        for kind, (name, _) in CLIENTS.items():
            for level in args.levels:
                seconds = timed_run(name, SourceItem.objects.all(),
                                    concurrency=level, context={"base_url": server.url})
                rates[kind, level] = args.items / seconds
                say(f"  {kind}, concurrency {level}: {seconds:.2f} s, "
                    f"{rates[kind, level]:,.0f} items/s")
    return rates


def measure_overhead(args, say) -> dict:
    """Items per second of the no-I/O pipeline without and with a fetch override, in
    pairs; and the hook's own cost per item."""
    from tests.testapp.models import SourceItem

    from .data import seed

    seed(args.overhead_items)
    names = ("benchmarks.outputs", "benchmarks.outputs_fetch")
    rates: dict[str, list[float]] = {name: [] for name in names}
    for pair in range(args.repeat):
        # Alternating which runs first: neither pays for the other's leftovers every time.
        for name in names if pair % 2 == 0 else names[::-1]:
            seconds = timed_run(name, SourceItem.objects.all())
            rates[name].append(args.overhead_items / seconds)
        say(f"  pair {pair + 1}/{args.repeat}: " + ", ".join(
            f"{name} {rates[name][-1]:,.0f} items/s" for name in names))
    return {"rates": rates, "ratios": [with_fetch / without for without, with_fetch
                                       in zip(*rates.values(), strict=True)],
            "hook_seconds": hook_cost(names)}


def hook_cost(names, count: int = 200_000) -> float:
    """Seconds per item that reading items through the run's fetcher costs with the
    ``fetch`` override over without it: the engine's fetch path alone, no database."""
    from datapipe.concurrency import fetcher_for
    from datapipe.pipe import PipeState
    from datapipe.registry import registry
    from tests.testapp.models import SourceItem

    items = [SourceItem(pk=n, number=n) for n in range(count)]
    best = {}
    for name in names * 3:  # the best of three: the least disturbed by the machine
        fetcher = fetcher_for(registry.get(name), PipeState(), None)
        with fetcher:
            started = time.perf_counter()
            for _, pipe, pending in fetcher.ahead(items):
                fetcher.complete(pipe, pending)
            seconds = (time.perf_counter() - started) / count
        best[name] = min(best.get(name, seconds), seconds)
    return best[names[1]] - best[names[0]]


def markdown(args, http, overhead, machine: dict[str, str], command: str) -> str:
    """The report: machine, the HTTP table, the overhead, the targets."""
    from .report import _table

    lines = ["# fetch(): I/O concurrency", "", f"`{command}`", ""]
    lines += [f"- **{name}**: {value}" for name, value in machine.items()]
    lines += ["", f"## {args.items:,} items, each one HTTP call answered after "
              f"{args.delay * 1000:g} ms (a server on 127.0.0.1)", ""]
    header, rows = ["concurrency"], []
    for _, title in CLIENTS.values():
        header += [f"{title}: time", "items/s", f"vs {args.levels[0]}"]
    for level in args.levels:
        row = [level]
        for kind in CLIENTS:
            rate = http[kind, level]
            row += [f"{args.items / rate:.2f} s", f"{rate:,.0f}",
                    f"{rate / http[kind, args.levels[0]]:.1f}x"]
        rows.append(row)
    lines += _table(header, rows)
    top = max(args.levels)
    lines += ["", f"At concurrency {top}, httpx's client reaches {http['async', top]:,.0f} items/s "
              f"where the minimal client on asyncio streams reaches {http['streams', top]:,.0f}: "
              f"about {1000 / http['async', top]:.1f} ms of CPU per request of httpx (client, "
              "connection pool, anyio) bound the async runs of one process, not the event "
              "loop. The server runs in a child process: in this one, it would take the "
              "interpreter lock from the clients it answers."]
    rates, ratios = overhead["rates"], overhead["ratios"]
    without, with_fetch = (statistics.median(measured) for measured in rates.values())
    lost = 1 - statistics.median(ratios)
    per_item = overhead["hook_seconds"]
    lines += ["", f"## The hook's cost at concurrency 1: {args.overhead_items:,} items, no I/O, "
              f"{args.repeat} pairs of runs", ""]
    lines += _table(["pipeline", "items/s (median)"], [
        ["benchmarks.outputs (no fetch)", f"{without:,.0f}"],
        ["benchmarks.outputs_fetch (a fetch override)", f"{with_fetch:,.0f}"],
    ])
    lines += ["", f"Throughput lost (median of the pairs' ratios): {lost:.1%}; the pairs ranged "
              f"from {1 - max(ratios):+.1%} to {1 - min(ratios):+.1%}. The fetch path alone, "
              f"without the database: {per_item * 1e6:.2f} µs per item, "
              f"{per_item * without:.1%} of an item of benchmarks.outputs."]
    lines += ["", "## Targets", ""]
    level, factor = SPEED_UP_TARGET
    targets = []
    for kind, (_, title) in CLIENTS.items():
        if (kind, level) in http and (kind, 1) in http:
            speed_up = http[kind, level] / http[kind, 1]
            targets.append([f"{title}: concurrency {level} vs 1", f"{speed_up:.1f}x",
                            f">= {factor:g}x", "met" if speed_up >= factor else "missed"])
    targets.append(["fetch override at concurrency 1, no I/O: throughput lost", f"{lost:.1%}",
                    f"< {OVERHEAD_TARGET:.0%}", "met" if lost < OVERHEAD_TARGET else "missed"])
    lines += _table(["target", "measured", "required", "verdict"], targets)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.serve:
        return serve(args.delay)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from .data import reset_outputs
    from .machine import describe

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    call_command("migrate", verbosity=0)
    say("HTTP runs:")
    http = measure_http(args, say)
    say("Overhead runs:")
    overhead = measure_overhead(args, say)
    reset_outputs()
    command = " ".join(["python -m benchmarks.concurrency",
                        *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    text = markdown(args, http, overhead, describe(), command)
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
