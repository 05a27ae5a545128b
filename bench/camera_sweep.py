"""How many cameras one box holds: N 1280x720 files replayed at 15 FPS each through one shared OpenVINO INT8 detector.

Each count runs in its own subprocess (`python -m edgecam.bench.camera_sweep N ...`) through the same
`MultiCameraRunner` and per-frame processor as `edgecam run --config`. A count holds when every camera processed
every frame at the source rate (processed FPS >= 99 % of 15) with frame age p95 <= 2 frame intervals. Frame age is
measured from when each frame was due on the file's fixed 15 FPS schedule, so a camera that falls behind shows it.
The process's CPU time per processed frame says where the cores go; the cameras' stage timings say where the
wall time goes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgecam.runtime.errors import EdgecamError

COUNTS = (8, 12, 16, 20, 24)
CAMERA_FPS = 15.0
WARMUP_SECONDS = 8.0
HOLD_FPS = 0.99 * CAMERA_FPS
HOLD_AGE_MS = 2 * 1000.0 / CAMERA_FPS


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_count(
    bundle: Path, variant: str, videos: list[Path], n: int, seconds: float, mode: str, threads: int | None = None
) -> dict[str, Any]:
    """In this process: `n` cameras for `WARMUP_SECONDS` + `seconds`; rates and CPU over the measured part only."""
    from edgecam.runtime.camera_config import parse_runtime_config
    from edgecam.runtime.cameras import MultiCameraRunner
    from edgecam.runtime.stats import percentiles

    cameras = [
        {"name": f"cam{i:02d}", "source": str(videos[i % len(videos)].resolve()), "bundle": str(bundle.resolve()),
         "variant": variant, "max_fps": CAMERA_FPS, "backend": "openvino"}
        for i in range(n)
    ]  # fmt: skip
    engine = {"mode": mode, "threads": threads}
    config = parse_runtime_config({"cameras": cameras, "engine": engine}, "camera sweep", Path.cwd())
    runner = MultiCameraRunner(config)
    runner.start()
    try:
        time.sleep(WARMUP_SECONDS)
        frames0 = [c.frames_out for c in runner.cameras]
        for c in runner.cameras:
            c.ages.clear()
        cpu0, t0 = _cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        frames1 = [c.frames_out for c in runner.cameras]
        cpu1, t1 = _cpu_seconds(), time.monotonic()
        ages = [list(c.ages) for c in runner.cameras]
        stages = [c.times.summary() for c in runner.cameras]
        errors = [c.error for c in runner.cameras if c.error]
        info = next(iter(runner.engines.values())).info()
    finally:
        runner.stop()
    elapsed = t1 - t0
    fps = [(b - a) / elapsed for a, b in zip(frames0, frames1, strict=True)]
    processed = sum(frames1) - sum(frames0)
    age_p95 = [percentiles(a, digits=1).get("p95", float("nan")) for a in ages]
    mean_ms = {
        stage: round(sum(s[stage]["mean_ms"] for s in stages if stage in s) / len(stages), 3) for stage in stages[0]
    }
    return {
        "cameras": n,
        "mode": mode,
        "seconds": round(elapsed, 1),
        "fps_min": round(min(fps), 2),
        "fps_mean": round(sum(fps) / n, 2),
        "age_p95_ms_max": max(age_p95),
        "age_p95_ms_median": sorted(age_p95)[n // 2],
        "cpu_ms_per_frame": round((cpu1 - cpu0) * 1000.0 / max(processed, 1), 3),
        "cpu_cores_busy": round((cpu1 - cpu0) / elapsed, 2),
        "stage_mean_ms": mean_ms,
        "engine": {k: info.get(k) for k in ("backend", "precision", "shared", "workers", "mode", "streams", "threads")},
        "errors": errors,
        "holds": min(fps) >= HOLD_FPS and max(age_p95) <= HOLD_AGE_MS and not errors,
    }


def sweep(
    bundle: Path, variant: str, videos: list[Path], counts: tuple[int, ...] = COUNTS, seconds: float = 30.0,
    mode: str = "latency", threads: int | None = 1,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every count in its own interpreter, so no count inherits another's threads or caches."""
    rows = []
    for n in counts:
        cmd = [sys.executable, "-m", "edgecam.bench.camera_sweep", str(bundle), variant, str(n), str(seconds), mode]
        cmd += [str(v) for v in videos] + (["--threads", str(threads)] if threads else [])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 240, check=False)
        if done.returncode != 0 or not done.stdout.strip():
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise EdgecamError(f"camera sweep at {n} cameras failed: {tail}", fix=f"run {' '.join(cmd)}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The sweep as a table, the largest count that holds, and where a frame's time goes at that count."""
    lines = [
        "| cameras | engine mode | processed FPS (min / mean) | frame age p95, worst camera | CPU per frame | "
        "cores busy | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cameras']} | {r['mode']} | {r['fps_min']:.2f} / {r['fps_mean']:.2f} | {r['age_p95_ms_max']:.0f} ms "
            f"| {r['cpu_ms_per_frame']:.2f} core-ms | {r['cpu_cores_busy']:.2f} | {'yes' if r['holds'] else 'no'} |"
        )
    held = [r for r in rows if r["holds"]]
    if held:
        best = max(held, key=lambda r: r["cameras"])
        stages = ", ".join(f"{k} {v:.2f}" for k, v in best["stage_mean_ms"].items())
        lines += [
            "",
            f"Largest count that holds: **{best['cameras']} cameras** ({best['mode']} mode). Per frame at that "
            f"count, mean wall ms per stage on a camera's thread: {stages}; the process spent "
            f"{best['cpu_ms_per_frame']:.2f} core-ms per processed frame (decoding on the read-ahead threads "
            "included).",
        ]
    else:
        lines += ["", "No count held."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecam.bench.camera_sweep")
    p.add_argument("bundle", type=Path)
    p.add_argument("variant")
    p.add_argument("cameras", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("mode", choices=("latency", "throughput"))
    p.add_argument("videos", type=Path, nargs="+")
    p.add_argument("--threads", type=int, default=None, help="inference threads of the shared engine")
    a = p.parse_args(argv)
    print(json.dumps(run_count(a.bundle, a.variant, a.videos, a.cameras, a.seconds, a.mode, a.threads)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgecamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
