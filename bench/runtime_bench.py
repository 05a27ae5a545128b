"""The runtime's targets, measured on real streams for BENCHMARKS.md (never as timed tests).

Four scenarios, each in its own subprocess (`python -m edgecam.bench.runtime_bench SCENARIO ...`) so that no two
engines share a process and disturb each other:

- `file`: bare inference FPS of a variant (the better of a run before and one after) vs `edgecam run` end to end on a
  1280x720 video, same backend and variant;
- `live`: one camera on a real 30 FPS stream (ffmpeg serving MJPEG over HTTP on loopback, `-re`), stats and RSS sampled
  every second; run once where the model keeps up (that run is also the memory soak) and once with the model made
  deliberately slower than the input (a fixed sleep per inference), to show frames are dropped, not queued;
- `cameras`: four 720p videos replayed at 15 FPS each through one shared INT8 engine.

Frame age, FPS, drops and queue depth come from the runtime's own per-camera stats (`StateRegistry`), RSS from
`runtime.stats.rss_bytes`. Results are cached in `WORK/runtime-bench/results.json`, keyed by each scenario's
parameters: a rerun of the report reuses them unless `RUNTIME_BENCH_FORCE=1` (the soak lasts `SOAK_MINUTES`,
default 10).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgecam.runtime.errors import EdgecamError

LIVE_FPS = 30
CAMERA_FPS = 15
N_CAMERAS = 4
SAMPLE_SECONDS = 1.0
DEFAULT_SOAK_MINUTES = 10.0
# name -> (scene, seconds, FPS, seed); 1280x720. Files are replayed from the start, so they outlast each run.
VIDEOS = {"shelf30": ("shelf", 20, LIVE_FPS, 0), "shelf15": ("shelf", 70, CAMERA_FPS, 1),
          "street15": ("street", 70, CAMERA_FPS, 2)}  # fmt: skip
SLOW_DELAY_MS = 60.0  # added to every inference in the slow-model run: well below 30 FPS on any machine


def soak_minutes() -> float:
    """`SOAK_MINUTES` from the environment (default 10): the length of the live run that is also the memory soak."""
    raw = os.environ.get("SOAK_MINUTES", str(DEFAULT_SOAK_MINUTES))
    try:
        value = float(raw)
    except ValueError:
        raise EdgecamError(f"SOAK_MINUTES={raw!r} is not a number", fix="e.g. SOAK_MINUTES=10") from None
    if value <= 0:
        raise EdgecamError(f"SOAK_MINUTES={raw!r} must be > 0", fix="e.g. SOAK_MINUTES=10")
    return value


def prepare_videos(folder: Path) -> dict[str, Path]:
    """Synthesized 1280x720 videos (kept): a 30 FPS shelf for file/live mode, a 15 FPS shelf and street for cameras."""
    from edgecam.train.synth import make_security_video, make_shelf_video

    folder.mkdir(parents=True, exist_ok=True)
    makers = {"shelf": make_shelf_video, "street": make_security_video}
    out = {}
    for name, (kind, seconds, fps, seed) in VIDEOS.items():
        path = folder / f"{name}.mp4"
        if not path.with_suffix(".json").is_file():  # the JSON is written last: its presence means a whole video
            makers[kind](path, seconds=seconds, fps=fps, size=(1280, 720), seed=seed)
        out[name] = path
    return out


# --- the scenarios, each run inside its own subprocess -------------------------------------------------------------
def bare_inference(bundle: Path, backend: str, variant: str | None, video: Path, seconds: float = 5.0) -> dict:
    """Inference alone on one preprocessed frame of `video`, back to back: the ceiling for end-to-end FPS."""
    import cv2

    from edgecam.runtime.model import Model
    from edgecam.runtime.preprocess import preprocess_batch

    cap = cv2.VideoCapture(str(video))
    ok, image = cap.read()
    cap.release()
    if not ok:
        raise EdgecamError("cannot read a frame", path=video, fix="delete it so the benchmark synthesizes it again")
    model = Model(bundle, backend=backend, variant=variant)
    batch, _ = preprocess_batch([image], model.spec)
    for _ in range(10):
        model.infer(batch)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.infer(batch)
        n += 1
    elapsed = time.perf_counter() - start
    return {"variant": model.variant.name, "fps": round(n / elapsed, 2), "ms": round(1000 * elapsed / n, 3)}


def decode_only(video: Path) -> dict:
    """Decoding the whole video with no model: the CPU the source costs per frame, shared with inference."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    n, start = 0, time.perf_counter()
    while cap.grab() and cap.retrieve()[0]:
        n += 1
    elapsed = time.perf_counter() - start
    cap.release()
    return {"frames": n, "ms": round(1000 * elapsed / max(n, 1), 3)}


def file_mode(bundle: Path, backend: str, variant: str | None, video: Path) -> dict:
    """`edgecam run` on the video (read, preprocess, infer, decode) against bare inference of the same variant."""
    from edgecam.runtime.pipeline import run

    before = bare_inference(bundle, backend, variant, video)
    summary = run(bundle, str(video), backend=backend, variant=before["variant"])
    after = bare_inference(bundle, backend, variant, video)
    # The faster of the two bare runs around the end-to-end one: on a busy machine the ceiling errs high, not low.
    bare = max(before, after, key=lambda b: b["fps"])
    bare["runs_fps"] = [before["fps"], after["fps"]]
    e2e = {"fps": summary.fps, "frames": summary.frames, "stages": summary.stages}
    return {"backend": backend, "variant": bare["variant"], "bare": bare, "e2e": e2e, "decode": decode_only(video)}


def _camera_yaml(path: Path, cameras: list[dict], engine: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"engine": engine, "cameras": cameras}, sort_keys=False))
    return path


def sample_runner(runner: Any, seconds: float, every: float = SAMPLE_SECONDS) -> list[dict]:
    """Every `every` s until `seconds` (or all cameras end): each camera's published stats and the process RSS."""
    from edgecam.runtime.stats import rss_bytes

    samples, start = [], time.monotonic()
    while time.monotonic() - start < seconds and any(c.thread.is_alive() for c in runner.cameras):
        time.sleep(every)
        stats = {name: runner.registry.camera(name).snapshot()["stats"] for name in runner.registry.names()}
        samples.append({"t": round(time.monotonic() - start, 2), "rss_mb": rss_bytes() / 1e6, "cameras": stats})
    return samples


def live_mode(bundle: Path, backend: str, variant: str | None, video: Path, seconds: float, delay_ms: float) -> dict:
    """One camera on ffmpeg's real-time MJPEG stream of `video`; `delay_ms` > 0 makes the model that much slower."""
    import tempfile

    from edgecam.bench.stream_server import MjpegServer
    from edgecam.runtime.camera_config import load_cameras_config
    from edgecam.runtime.cameras import MultiCameraRunner

    with MjpegServer(video) as server, tempfile.TemporaryDirectory() as tmp:
        engine = slow_backend(delay_ms / 1000.0) if delay_ms > 0 else backend
        cam = {"name": "live", "source": server.url, "bundle": str(bundle.resolve()), "backend": engine}
        if variant:
            cam["variant"] = variant
        runner = MultiCameraRunner(load_cameras_config(_camera_yaml(Path(tmp) / "live.yaml", [cam], {})))
        runner.start()
        try:
            samples = sample_runner(runner, seconds)
        finally:
            runner.stop()
        camera = runner.cameras[0].summary()
    samples = [{"t": s["t"], "rss_mb": s["rss_mb"], **s["cameras"].get("live", {})} for s in samples]
    return {
        "delay_ms": delay_ms,
        "camera": camera,
        "samples": samples,
        "engines": [e.info() for e in runner.engines.values()],
    }


def slow_backend(delay: float) -> str:
    """Register `openvino-slow`, OpenVINO sleeping `delay` s before each inference (the slow-model run), and return
    its name: a backend like any other, chosen by name in the camera's configuration."""
    from edgecam.runtime.backends import register_backend
    from edgecam.runtime.backends.openvino import OpenVinoBackend

    class SlowOpenVino(OpenVinoBackend):
        name = "openvino-slow"

        def infer(self, batch: Any) -> Any:
            time.sleep(delay)
            return super().infer(batch)

    return register_backend(SlowOpenVino).name


def four_cameras(bundle: Path, variant: str, videos: list[Path], seconds: float, mode: str) -> dict:
    """`N_CAMERAS` videos replayed at `CAMERA_FPS` (max_fps) through one shared OpenVINO engine in `mode`."""
    import tempfile

    from edgecam.runtime.camera_config import load_cameras_config
    from edgecam.runtime.cameras import MultiCameraRunner

    cams = [
        {"name": f"cam{i}", "source": str(videos[i % len(videos)].resolve()), "bundle": str(bundle.resolve()),
         "variant": variant, "max_fps": CAMERA_FPS}
        for i in range(N_CAMERAS)
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        config = load_cameras_config(_camera_yaml(Path(tmp) / "cams.yaml", cams, {"mode": mode}))
        runner = MultiCameraRunner(config)
        runner.start()
        try:
            samples = sample_runner(runner, seconds)
        finally:
            runner.stop()
    return {
        "mode": mode,
        "cameras": [c.summary() for c in runner.cameras],
        "engines": [e.info() for e in runner.engines.values()],
        "rss_mb": [round(s["rss_mb"], 1) for s in samples],
    }


# --- the parent: one subprocess per scenario, results cached ---------------------------------------------------------
def run_scenario(args: list[str], timeout: float) -> dict:
    """`python -m edgecam.bench.runtime_bench ARGS` in a fresh interpreter; its last stdout line is the JSON."""
    cmd = [sys.executable, "-m", "edgecam.bench.runtime_bench", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        msg = f"runtime benchmark {args[0]} took over {timeout:.0f} s"
        raise EdgecamError(msg, fix="check the machine load") from None
    if done.returncode != 0 or not done.stdout.strip():
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise EdgecamError(f"runtime benchmark {' '.join(args)} failed: {tail}", fix="run that command to see why")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bundle_created(bundle: Path) -> str | None:
    """When the bundle was exported: a re-exported model (same path) must not reuse the old model's results."""
    try:
        return json.loads((Path(bundle) / "edgecam.json").read_text()).get("created")
    except (OSError, ValueError):
        return None


def measure(work: Path, bundle: Path, soak: float | None = None, force: bool | None = None) -> dict[str, Any]:
    """Every scenario's results, from `work/runtime-bench/results.json` where its parameters match, else measured."""
    folder = work / "runtime-bench"
    folder.mkdir(parents=True, exist_ok=True)
    cache_path = folder / "results.json"
    force = os.environ.get("RUNTIME_BENCH_FORCE") == "1" if force is None else force
    cache: dict[str, Any] = {} if force or not cache_path.is_file() else json.loads(cache_path.read_text())
    soak = soak_minutes() if soak is None else soak
    videos = prepare_videos(folder)
    b, v = str(bundle), videos
    slow_seconds = min(180.0, max(60.0, soak * 12))
    plan: dict[str, list[str]] = {
        "file/onnxruntime": ["file", b, "onnxruntime", "onnx-fp32", str(v["shelf30"])],
        "file/openvino": ["file", b, "openvino", "openvino-fp32", str(v["shelf30"])],
        "file/openvino-int8": ["file", b, "openvino", "openvino-int8", str(v["shelf30"])],
        "live/keeps-up": ["live", b, "openvino", "openvino-int8", str(v["shelf30"]), str(soak * 60), "0"],
        "live/slow-model": [
            "live", b, "openvino", "openvino-int8", str(v["shelf30"]), str(slow_seconds), str(SLOW_DELAY_MS)
        ],
        "cameras/latency": ["cameras", b, "openvino-int8", str(v["shelf15"]), str(v["street15"]), "60", "latency"],
        "cameras/throughput": [
            "cameras", b, "openvino-int8", str(v["shelf15"]), str(v["street15"]), "60", "throughput"
        ],
    }  # fmt: skip
    made = bundle_created(bundle)
    results: dict[str, Any] = {}
    for key, args in plan.items():
        cached = cache.get(key)
        if cached is not None and cached.get("args") == args and cached.get("bundle_created") == made:
            results[key] = cached
            continue
        seconds = float(args[5]) if args[0] == "live" else 60.0
        try:
            results[key] = {"args": args, "bundle_created": made, **run_scenario(args, timeout=seconds + 300)}
        except EdgecamError as exc:  # reported in the section, not cached: the next run tries again
            results[key] = {"args": args, "error": str(exc)}
            continue
        cache[key] = results[key]
        cache_path.write_text(json.dumps(cache, indent=1) + "\n")  # after each: an interrupted run keeps its parts
    return results


def main(argv: list[str] | None = None) -> int:
    """The subprocess entry point: one scenario, one JSON line on stdout."""
    p = argparse.ArgumentParser(prog="python -m edgecam.bench.runtime_bench")
    sub = p.add_subparsers(dest="scenario", required=True)
    f = sub.add_parser("file")
    f.add_argument("bundle", type=Path)
    f.add_argument("backend")
    f.add_argument("variant")
    f.add_argument("video", type=Path)
    live = sub.add_parser("live")
    for name in ("bundle", "backend", "variant", "video"):
        live.add_argument(name, type=Path if name in ("bundle", "video") else str)
    live.add_argument("seconds", type=float)
    live.add_argument("delay_ms", type=float)
    cams = sub.add_parser("cameras")
    cams.add_argument("bundle", type=Path)
    cams.add_argument("variant")
    cams.add_argument("videos", type=Path, nargs="+")
    cams.add_argument("seconds", type=float)
    cams.add_argument("mode", choices=("latency", "throughput"))
    a = p.parse_args(argv)
    if a.scenario == "file":
        out = file_mode(a.bundle, a.backend, a.variant, a.video)
    elif a.scenario == "live":
        out = live_mode(a.bundle, a.backend, a.variant, a.video, a.seconds, a.delay_ms)
    else:
        out = four_cameras(a.bundle, a.variant, a.videos, a.seconds, a.mode)
    from edgecam.runtime.sinks.jsonl import to_jsonable

    print(json.dumps(to_jsonable(out)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgecamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
