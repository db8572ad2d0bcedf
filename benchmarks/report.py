"""The results as a markdown table of medians, and the targets, each met or missed."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .scenarios import SCENARIOS

CELERY_MISSING = "n/a (Celery runs not available)"
RSS_ALLOWANCE_MIB = 30


@dataclass
class Measured:
    """The runs of one scenario at one size."""

    items: int
    rates: list[float] = field(default_factory=list)  # items per second, one per run
    peak_rss_kib: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def peak_rss_mib(self) -> float:
        return max(self.peak_rss_kib) / 1024


#: The scenarios measured at several sizes (``--sizes``): items/s and peak RSS by size.
SIZE_SCENARIOS = ("datapipe", "datapipe_add_to_update", "celery")

#: A first run at the largest size keeps this share of the items/s at ``--items``.
FLAT_FIRST_RUN = 0.9

# (what, scenario, compared with, at least this many times; None: measured, no target)
RATIO_TARGETS = [
    ("datapipe vs naive loop", "datapipe", "naive", 10.0),
    ("datapipe vs raw bulk_create", "datapipe", "bulk_create", 0.8),
    ("datapipe with add_to_update vs naive loop", "datapipe_add_to_update", "naive", 2.0),
    ("datapipe with an UPDATE query per item vs naive loop", "datapipe_update", "naive", None),
    ("datapipe in Celery vs local", "celery", "datapipe", 1.0),
]


def _verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def targets(results: dict[str, Measured], by_size: dict[tuple[str, int], Measured],
            items: int) -> list[tuple[str, str, str, str]]:
    """Rows ``(target, measured, required, verdict)``."""
    rows = []
    for what, key, other, factor in RATIO_TARGETS:
        required = "(measured)" if factor is None else f">= {factor:g}x"
        if key in results and other in results:
            ratio = results[key].median / results[other].median
            verdict = "" if factor is None else _verdict(ratio >= factor)
            rows.append((what, f"{ratio:.2f}x", required, verdict))
        else:
            rows.append((what, "n/a", required, "not measured"))
    sizes = sorted({size for _, size in by_size})
    if sizes and sizes[-1] > items and ("datapipe", items) in by_size:
        ratio = by_size["datapipe", sizes[-1]].median / by_size["datapipe", items].median
        rows.append((f"datapipe, first run at {sizes[-1]:,} vs {items:,} items (items/s)",
                     f"{ratio:.2f}x", f">= {FLAT_FIRST_RUN:g}x", _verdict(ratio >= FLAT_FIRST_RUN)))
    for key in SIZE_SCENARIOS:
        if len(sizes) >= 2 and (key, sizes[0]) in by_size and (key, sizes[-1]) in by_size:
            growth = by_size[key, sizes[-1]].peak_rss_mib - by_size[key, sizes[0]].peak_rss_mib
            rows.append((f"{key}: peak RSS at {sizes[-1]:,} vs {sizes[0]:,} items",
                         f"{growth:+.1f} MiB", f"<= +{RSS_ALLOWANCE_MIB} MiB",
                         _verdict(growth <= RSS_ALLOWANCE_MIB)))
    return rows


def _table(header: list[str], rows: list) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def markdown(results, by_size, machine: dict[str, str], command: str, repeat: int,
             celery: bool, items: int, thorough=None) -> str:
    """The whole report: machine, scenarios, runs by size, targets, property test."""
    lines = ["# datapipe benchmarks", "", f"`{command}`, medians of {repeat} run(s).", ""]
    lines += [f"- **{name}**: {value}" for name, value in machine.items()]
    lines += ["", "## Throughput", ""]
    rows = []
    for key, scenario in SCENARIOS.items():
        if key in results:
            measured = results[key]
            rows.append(
                (
                    scenario.title,
                    f"{measured.items:,}",
                    f"{measured.median:,.0f}",
                    f"{measured.peak_rss_mib:.1f}",
                )
            )
        elif key == "celery" and not celery:
            rows.append((scenario.title, "", CELERY_MISSING, ""))
    lines += _table(["scenario", "items", "items/s (median)", "peak RSS (MiB)"], rows)
    if by_size:
        lines += ["", "## First runs by size", "",
                  "Peak RSS is the measuring process's: for Celery, the one that dispatches "
                  "and waits.", ""]
        lines += _table(
            ["scenario", "items", "items/s (median)", "peak RSS (MiB)"],
            [
                (SCENARIOS[key].title, f"{size:,}", f"{m.median:,.0f}", f"{m.peak_rss_mib:.1f}")
                for key in SIZE_SCENARIOS
                for size in sorted(size for k, size in by_size if k == key)
                for m in [by_size[key, size]]
            ],
        )
    lines += ["", "## Targets", ""]
    lines += _table(["target", "measured", "required", ""], targets(results, by_size, items))
    if thorough is not None:
        lines += ["", "## Reparse property test, thorough profile", "",
                  f"- {thorough.examples:,} passing examples, {thorough.seconds:,.0f} s: "
                  f"{'passed' if thorough.passed else 'FAILED'} ({thorough.summary})"]
    return "\n".join(lines) + "\n"
