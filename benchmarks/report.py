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


# (what, scenario, compared with, at least this many times)
RATIO_TARGETS = [
    ("datapipe vs naive loop", "datapipe", "naive", 10.0),
    ("datapipe vs raw bulk_create", "datapipe", "bulk_create", 0.8),
    ("datapipe with UPDATE vs naive loop", "datapipe_update", "naive", 2.0),
    ("datapipe with add_to_update vs naive loop", "datapipe_add_to_update", "naive", 2.0),
    ("datapipe in Celery vs local", "celery", "datapipe", 1.0),
]


def targets(
    results: dict[str, Measured], rss: dict[int, Measured]
) -> list[tuple[str, str, str, str]]:
    """Rows ``(target, measured, required, verdict)``."""
    rows = []
    for what, key, other, factor in RATIO_TARGETS:
        if key in results and other in results:
            ratio = results[key].median / results[other].median
            verdict = "met" if ratio >= factor else "missed"
            rows.append((what, f"{ratio:.2f}x", f">= {factor:g}x", verdict))
        else:
            rows.append((what, "n/a", f">= {factor:g}x", "not measured"))
    if len(rss) >= 2:
        small, large = min(rss), max(rss)
        growth = rss[large].peak_rss_mib - rss[small].peak_rss_mib
        verdict = "met" if growth <= RSS_ALLOWANCE_MIB else "missed"
        rows.append(
            (
                f"peak RSS at {large:,} items vs {small:,} items",
                f"{growth:+.1f} MiB",
                f"<= +{RSS_ALLOWANCE_MIB} MiB",
                verdict,
            )
        )
    return rows


def _table(header: list[str], rows: list) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def markdown(results, rss, machine: dict[str, str], command: str, repeat: int, celery: bool) -> str:
    """The whole report: machine, scenarios, RSS by size, targets."""
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
    if rss:
        lines += ["", "## Peak RSS of scenario 1 by size", ""]
        lines += _table(
            ["items", "items/s", "peak RSS (MiB)"],
            [
                (f"{size:,}", f"{m.median:,.0f}", f"{m.peak_rss_mib:.1f}")
                for size, m in sorted(rss.items())
            ],
        )
    lines += ["", "## Targets", ""]
    lines += _table(["target", "measured", "required", ""], targets(results, rss))
    return "\n".join(lines) + "\n"
