"""Summaries and the results table: medians and tails, never single samples."""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Row:
    """One line of the table: a scenario measured for one contender."""

    scenario: str
    contender: str
    unit: str
    samples: list[float] = field(default_factory=list)
    target: str = ""
    note: str = ""
    ratio: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        lines = [
            f"# {self.title}",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(self.started))} on "
            f"{platform.machine()} ({platform.python_implementation()} "
            f"{platform.python_version()}), against a real InvokeAI 6.14.2 on loopback.",
            "",
            "| scenario | contender | n | median | p95 | p99 | unit | ratio | target | note |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            ratio = f"{r.ratio:.2f}" if r.ratio is not None else ""
            lines.append(
                f"| {r.scenario} | {r.contender} | {len(r.samples)} | {_fmt(r.median)} | "
                f"{_fmt(r.p95)} | {_fmt(r.p99)} | {r.unit} | {ratio} | {r.target} | {r.note} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, stem: str) -> Path:
        md = RESULTS_DIR / f"{stem}.md"
        md.write_text(self.markdown())
        raw: list[dict[str, Any]] = [
            {**asdict(r), "median": r.median, "p95": r.p95, "p99": r.p99} for r in self.rows
        ]
        (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(raw, indent=1) + "\n")
        return md


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return ""
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"
