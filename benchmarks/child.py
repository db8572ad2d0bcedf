"""One measured run in a fresh process: ``python -m benchmarks.child SCENARIO``.

A fresh process per run makes its peak RSS the scenario's own. It prints one JSON
line: items processed, seconds, peak RSS (KiB) and RSS before the run.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def peak_rss_kib() -> int:
    """The process's peak resident set size so far, in KiB.

    On Linux, ``VmHWM`` of this process image: ``ru_maxrss`` would also count the
    parent's memory, copied by the fork that preceded the exec.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from benchmarks.data import count_outputs
    from benchmarks.scenarios import SCENARIOS

    scenario = SCENARIOS[argv[0]]
    baseline = peak_rss_kib()
    started = time.perf_counter()
    processed = scenario.run()
    seconds = time.perf_counter() - started
    outputs = count_outputs()
    if outputs != processed:
        raise RuntimeError(f"{scenario.key}: {processed} items processed but {outputs} outputs")
    print(
        json.dumps(
            {
                "processed": processed,
                "seconds": seconds,
                "peak_rss_kib": peak_rss_kib(),
                "baseline_rss_kib": baseline,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
