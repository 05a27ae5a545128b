"""Per-stage timing with bounded memory: p50/p95 over a sliding window, totals and latency histograms over the run.

The histograms have fixed buckets so that counts from many cameras and devices add up bucket by bucket (Prometheus
`sum by (le)`); a percentile of one window cannot be combined with another's.
"""

from __future__ import annotations

import bisect
import os
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def percentiles(values: Any, qs: tuple[int, ...] = (50, 95), digits: int = 3) -> dict[str, float]:
    """{"p50": .., "p95": ..} of `values` (any iterable of numbers), rounded; {} when there are none. The one place
    the runtime, the benchmark and the reports compute their percentiles."""
    arr = np.asarray(values if hasattr(values, "__len__") else list(values), dtype=np.float64)
    if arr.size == 0:
        return {}
    return {f"p{q}": round(float(v), digits) for q, v in zip(qs, np.percentile(arr, qs), strict=True)}


# Upper bounds in seconds, from a fast postprocess (0.5 ms) to a slow CPU inference (2 s); slower lands in +Inf.
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class HistogramSnapshot:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum of the observed seconds."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """[(upper bound, observations <= it), ...] ending with (inf, count): Prometheus' `le` buckets."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class LatencyHistogram:
    """Fixed-bucket counts of durations: O(log buckets) per observation, constant memory over any run length.

    Written by one thread (the camera's); `snapshot()` copies it for the scrape side."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1  # `le`: a value equal to a bound is in it
        self._sum += seconds

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self._counts), self._sum)


class StageTimes:
    """Record seconds per named stage; summaries in milliseconds, histograms in seconds."""

    def __init__(self, window: int = 2048) -> None:
        self.window = window
        self._samples: dict[str, deque[float]] = {}
        self._count: dict[str, int] = {}
        self._total: dict[str, float] = {}
        self._histograms: dict[str, LatencyHistogram] = {}

    def add(self, stage: str, seconds: float) -> None:
        if stage not in self._samples:
            self._samples[stage] = deque(maxlen=self.window)
            self._count[stage] = 0
            self._total[stage] = 0.0
            self._histograms[stage] = LatencyHistogram()
        self._samples[stage].append(seconds)
        self._count[stage] += 1
        self._total[stage] += seconds
        self._histograms[stage].observe(seconds)

    def histograms(self) -> dict[str, HistogramSnapshot]:
        """Every stage's latency histogram over the whole run."""
        return {stage: h.snapshot() for stage, h in list(self._histograms.items())}

    def summary(self) -> dict[str, dict[str, Any]]:
        out = {}
        for stage, values in self._samples.items():
            pct = percentiles(np.asarray(values) * 1000.0)
            out[stage] = {
                "count": self._count[stage],
                "mean_ms": round(self._total[stage] * 1000.0 / self._count[stage], 3),
                "p50_ms": pct["p50"],
                "p95_ms": pct["p95"],
            }
        return out


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; elsewhere the peak, the best the stdlib offers)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
