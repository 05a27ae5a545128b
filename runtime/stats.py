"""Per-stage timing with bounded memory: p50/p95 over a sliding window, totals over the whole run."""

from __future__ import annotations

import os
import sys
from collections import deque
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


class StageTimes:
    """Record seconds per named stage; summaries in milliseconds."""

    def __init__(self, window: int = 2048) -> None:
        self.window = window
        self._samples: dict[str, deque[float]] = {}
        self._count: dict[str, int] = {}
        self._total: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        if stage not in self._samples:
            self._samples[stage] = deque(maxlen=self.window)
            self._count[stage] = 0
            self._total[stage] = 0.0
        self._samples[stage].append(seconds)
        self._count[stage] += 1
        self._total[stage] += seconds

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
