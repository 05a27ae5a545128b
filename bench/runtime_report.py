"""The runtime section of BENCHMARKS.md: `runtime_bench.measure()` results -> tables and one verdict line per target.

The summaries are pure functions of the sampled stats so that tests can feed them made-up samples. Frame age is the
runtime's own: capture (frame decoded on the reader thread) to the end of processing, p95 over a sliding window of
the last `AGE_WINDOW` processed frames (`CameraRunner.ages`), published about twice a second and sampled every second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecam.bench.runtime_bench import CAMERA_FPS, LIVE_FPS, N_CAMERAS, measure

AGE_WINDOW = 512  # frames in CameraRunner.ages
FILE_RATIO_TARGET = 0.90
RSS_GROWTH_TARGET_MB = 20.0
RSS_FIRST_MINUTE_S = 60.0
CAMERA_RATE_SHARE = 0.95  # a camera "keeps up" when it processes at least this share of its input rate


def _age(sample: dict[str, Any], key: str) -> float | None:
    age = sample.get("frame_age_ms")
    value = age.get(key) if isinstance(age, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def _rate(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
    dt = b["t"] - a["t"]
    return round((b.get(key, 0) - a.get(key, 0)) / dt, 2) if dt > 0 else 0.0


def age_summary(samples: list[dict[str, Any]], window: int = AGE_WINDOW) -> dict[str, Any]:
    """One camera's samples -> frame age p95 of the first full window (the start), of the last (the end) and the
    worst; the trend of the newest frame's age (ms per minute, past the first 10 %); rates in/out and drops."""
    aged = [s for s in samples if _age(s, "p95") is not None]
    if not aged:
        return {}
    start = next((s for s in aged if s.get("frames_out", 0) >= window), aged[-1])
    after = [s for s in aged if s["t"] >= start["t"]]
    end = after[-1]
    trend = [s for s in aged if s["t"] >= 0.1 * aged[-1]["t"]]  # past the warm-up, the whole run
    t = np.array([s["t"] for s in trend])
    last = np.array([_age(s, "last") or 0.0 for s in trend])
    slope = float(np.polyfit(t, last, 1)[0] * 60.0) if len(trend) >= 3 and np.ptp(t) > 0 else 0.0
    frames_in, dropped = end.get("frames_in", 0), end.get("dropped", 0)
    return {
        "seconds": end["t"],
        "start_t": start["t"],
        "age_p95_start_ms": _age(start, "p95"),
        "age_p95_end_ms": _age(end, "p95"),
        "age_p95_worst_ms": max(_age(s, "p95") or 0.0 for s in after),
        "age_p50_end_ms": _age(end, "p50"),
        "age_trend_ms_per_min": round(slope, 2),
        "fps_in": _rate(start, end, "frames_in") if end is not start else end.get("fps_in", 0.0),
        "fps_out": _rate(start, end, "frames_out") if end is not start else end.get("fps_out", 0.0),
        "frames_in": frames_in,
        "frames_out": end.get("frames_out", 0),
        "dropped": dropped,
        "dropped_share": round(dropped / frames_in, 4) if frames_in else 0.0,
        "queue_depth_max": max(int(s.get("queue_depth", 0)) for s in samples),
    }


def rss_summary(samples: list[dict[str, Any]], first: float = RSS_FIRST_MINUTE_S) -> dict[str, Any]:
    """RSS at the first sample from `first` seconds on (the end when the run is shorter), at the end, the growth
    between them, the peak, and one reading per minute."""
    points = [(float(s["t"]), float(s["rss_mb"])) for s in samples if "rss_mb" in s]
    if not points:
        return {}
    at_first = next((p for p in points if p[0] >= first), points[-1])
    end = points[-1]
    per_minute, minute = [], 0.0
    for t, rss in points:
        if t >= minute:
            per_minute.append((round(t), round(rss, 1)))
            minute = (t // 60 + 1) * 60
    return {
        "rss_first_t": at_first[0],
        "rss_first_mb": round(at_first[1], 1),
        "rss_end_t": end[0],
        "rss_end_mb": round(end[1], 1),
        "rss_growth_mb": round(end[1] - at_first[1], 1),
        "rss_peak_mb": round(max(r for _, r in points), 1),
        "rss_per_minute": per_minute,
    }


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def file_lines(results: dict[str, Any]) -> list[str]:
    rows = [r for k, r in results.items() if k.startswith("file/")]
    lines = [
        "### File mode: 1280x720 video, detector at its input size, `edgecam run` end to end vs bare inference",
        "",
        "| backend | variant | bare inference FPS | end-to-end FPS | ratio | read (wait) | preprocess | infer "
        "| postprocess | decode alone |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for r in rows:
        bare, e2e = r["bare"]["fps"], r["e2e"]["fps"]
        ratio = e2e / bare if bare else 0.0
        st = r["e2e"]["stages"]
        ms = [f"{st[s]['mean_ms']:.2f}" if s in st else "-" for s in ("read", "preprocess", "infer", "postprocess")]
        decode = f"{r['decode']['ms']:.2f}" if "decode" in r else "-"
        lines.append(
            f"| {r['backend']} | {r['variant']} | {bare:.1f} | {e2e:.1f} | {ratio:.2f} | {' | '.join(ms)} | {decode} |"
        )
        verdicts.append(
            f"- File mode, {r['backend']} {r['variant']}: end-to-end {e2e:.1f} FPS = {ratio:.0%} of bare inference "
            f"{bare:.1f} FPS (target >= {FILE_RATIO_TARGET:.0%}): {_verdict(ratio >= FILE_RATIO_TARGET)}"
        )
    note = (
        "Stage columns: mean ms per frame in the end-to-end run. Files decode one or two frames ahead on a thread, "
        "so `read (wait)` is only the time the loop waited for a decoded frame; `decode alone` is what decoding "
        "the same video costs with no model running: CPU time that the 2 cores share with inference."
    )
    return [*lines, "", note, "", *verdicts, ""]


def live_lines(results: dict[str, Any]) -> list[str]:
    interval = 1000.0 / LIVE_FPS
    fast, slow = results["live/keeps-up"], results["live/slow-model"]
    f, s = age_summary(fast["samples"]), age_summary(slow["samples"])
    lines = [
        f"### Live mode: ffmpeg serving the 720p video as MJPEG over HTTP in real time ({LIVE_FPS} FPS, loopback)",
        "",
        "| run | seconds | FPS in | FPS out | dropped | age p95 start | age p95 end | worst window | "
        "age trend ms/min | max queue |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in (("model keeps up", f), (f"model +{slow['delay_ms']:.0f} ms per frame", s)):
        lines.append(
            f"| {name} | {m['seconds']:.0f} | {m['fps_in']:.1f} | {m['fps_out']:.1f} | {m['dropped']} "
            f"({m['dropped_share']:.0%}) | {m['age_p95_start_ms']:.1f} | {m['age_p95_end_ms']:.1f} | "
            f"{m['age_p95_worst_ms']:.1f} | {m['age_trend_ms_per_min']:+.2f} | {m['queue_depth_max']} |"
        )
    keeps = f["age_p95_worst_ms"] <= 2 * interval
    flat = s["age_p95_end_ms"] <= s["age_p95_start_ms"] + interval and s["dropped"] > 0
    return [
        *lines,
        "",
        f"Age p95 in ms over windows of {AGE_WINDOW} frames: the first full window (start), the last (end) and the "
        "worst; the trend is a line fitted to the newest frame's age over the run.",
        "",
        f"- Live, model keeps up: frame age p95 {f['age_p95_end_ms']:.1f} ms at the end, worst window "
        f"{f['age_p95_worst_ms']:.1f} ms (target <= 2 frame intervals = {2 * interval:.1f} ms): {_verdict(keeps)}",
        f"- Live, model slower than the input ({s['fps_out']:.1f} of {s['fps_in']:.1f} FPS processed): age p95 "
        f"{s['age_p95_start_ms']:.1f} ms at the start, {s['age_p95_end_ms']:.1f} ms at the end, {s['dropped']} frames "
        f"dropped ({s['dropped_share']:.0%}), engine queue at most {s['queue_depth_max']} when sampled (target: "
        f"bounded, no growth over the run, frames dropped rather than queued): {_verdict(flat)}",
        "",
    ]


def memory_lines(results: dict[str, Any]) -> list[str]:
    r = rss_summary(results["live/keeps-up"]["samples"])
    minutes = r["rss_end_t"] / 60.0
    series = ", ".join(f"{t // 60:.0f} min {rss:.0f}" for t, rss in r["rss_per_minute"])
    ok = r["rss_growth_mb"] <= RSS_GROWTH_TARGET_MB
    short = "" if minutes >= 9.9 else f" (this run lasted {minutes:.1f} min, not 10: set SOAK_MINUTES=10)"
    return [
        f"### Memory: RSS of the live run above, {minutes:.1f} min of the {LIVE_FPS} FPS stream",
        "",
        f"RSS in MB, sampled every second (one reading per minute shown): {series}; peak {r['rss_peak_mb']:.0f}.",
        "",
        f"- Memory: RSS {r['rss_first_mb']:.1f} MB after {r['rss_first_t']:.0f} s, {r['rss_end_mb']:.1f} MB after "
        f"{r['rss_end_t']:.0f} s, growth {r['rss_growth_mb']:+.1f} MB (target <= {RSS_GROWTH_TARGET_MB:.0f} MB)"
        f"{short}: {_verdict(ok and not short)}",
        "",
    ]


def camera_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        f"### {N_CAMERAS} cameras: 720p videos replayed at {CAMERA_FPS} FPS each, one shared OpenVINO INT8 engine",
        "",
        "| engine mode | streams / requests | camera | processed FPS | frames in / out | age p50 | age p95 | dropped |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for key in sorted(k for k in results if k.startswith("cameras/")):
        run = results[key]
        engine = run["engines"][0] if run["engines"] else {}
        streams = f"{engine.get('streams', '-')} / {engine.get('workers', '-')}"
        ok = True
        for c in run["cameras"]:
            age = c["frame_age_ms"]
            all_done = c["frames"] >= c.get("frames_in", c["frames"]) and not c["error"]
            ok = ok and all_done and c["fps_out"] >= CAMERA_RATE_SHARE * CAMERA_FPS
            lines.append(
                f"| {run['mode']} | {streams} | {c['camera']} | {c['fps_out']:.1f} | {c.get('frames_in', '-')} / "
                f"{c['frames']} | {age.get('p50', 0):.1f} | {age.get('p95', 0):.1f} | {c['dropped']} |"
            )
        worst = min(c["fps_out"] for c in run["cameras"])
        verdicts.append(
            f"- {N_CAMERAS} cameras at {CAMERA_FPS} FPS, {run['mode']} mode: slowest camera {worst:.1f} FPS processed "
            f"(target every camera >= {CAMERA_RATE_SHARE * CAMERA_FPS:.2f}, every frame processed): {_verdict(ok)}"
        )
    note = (
        "Files are replayed at the camera rate (`max_fps`), never dropped: a camera that cannot keep up shows as a "
        "processed rate below the input rate. Age: from reading a frame to the end of its processing, ms."
    )
    return [*lines, "", note, "", *verdicts, ""]


def _failed(results: dict[str, Any], keys: list[str]) -> list[str]:
    """One line per scenario among `keys` that is missing or failed (its error), so the rest still reports."""
    out = []
    for key in keys:
        run = results.get(key)
        if run is None or "error" in run:
            out.append(f"- {key}: not measured: {run['error'] if run else 'no result'}")
    return out


def format_section(results: dict[str, Any]) -> list[str]:
    """The markdown lines of the runtime section, from `measure()`'s results (or a fake dict in tests)."""
    lines = [
        "## Runtime targets",
        "",
        "Measured by `bench/runtime_bench.py`, each scenario in its own process; cached in "
        "`runtime-bench/results.json` (rerun with `RUNTIME_BENCH_FORCE=1`; soak length `SOAK_MINUTES`).",
        "",
    ]
    good = {k: v for k, v in results.items() if "error" not in v}
    files = sorted(k for k in results if k.startswith("file/"))
    cams = sorted(k for k in results if k.startswith("cameras/"))
    live = ["live/keeps-up", "live/slow-model"]
    for keys, part in ((files, file_lines), (live, live_lines), (live[:1], memory_lines), (cams, camera_lines)):
        failed = _failed(results, keys)
        if len(failed) < len(keys) and not (part is live_lines and failed):
            lines += part(good)
        lines += [*failed, ""] if failed else []
    return lines


def runtime_section(work: Path, detector_bundle: Path) -> list[str]:
    """Measure (or reuse the cached results) and format: what `bench/report.py` appends to BENCHMARKS.md."""
    return format_section(measure(Path(work), Path(detector_bundle)))
