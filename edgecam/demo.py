"""`make demo`: synthesize shelf-slot data, train the classifier, export it, run it on a shelf-camera video.

Each step calls the same library function as its CLI command; outputs are kept so a second run reuses them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.time()


def video_accuracy(jsonl: Path, labels: list[list[str]]) -> dict[str, Any]:
    """Per-slot, per-frame agreement of the runtime's labels with the video's ground truth."""
    correct = total = 0
    with open(jsonl) as fh:
        for line in fh:
            rec = json.loads(line)
            truth = labels[rec["frame"]]
            for res, want in zip(rec["results"], truth, strict=True):
                correct += res["label"] == want
                total += 1
    return {"slot_accuracy": correct / total if total else 0.0, "slot_frames": total}


def run_demo(out: str | Path = "runs/demo", n: int = 3000, epochs: int = 12, time_limit: float = 4.0) -> dict:
    from edgecam.devices.benchmark import benchmark_bundle
    from edgecam.export.bundle_writer import export_bundle
    from edgecam.runtime.pipeline import run
    from edgecam.train.config import load_config
    from edgecam.train.synth import make_shelf_video, synth_classification
    from edgecam.train.trainer import train_classifier

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, run_dir, bundle = out / "data" / "retail-slots", out / "train", out / "bundle"
    timings: dict[str, float] = {}
    started = time.time()

    t = _step(f"1/5 synthesize {n} shelf-slot crops (stocked / low / empty) -> {data}")
    if not (data / "synth.json").is_file():
        synth_classification("retail", data, n, seed=0, progress=True)
    timings["synth_s"] = time.time() - t

    t = _step(f"2/5 train ecnet_s at 64 px (<= {epochs} epochs, <= {time_limit} min) -> {run_dir}")
    if not (run_dir / "results.json").is_file():
        cfg = load_config(
            None,
            dict(
                data=str(data),
                out=str(run_dir),
                model="ecnet_s",
                imgsz=64,
                epochs=epochs,
                batch=64,
                time_limit=time_limit,
                patience=4,
            ),
        )
        train_classifier(cfg)
    trained = json.loads((run_dir / "results.json").read_text())
    timings["train_s"] = time.time() - t

    t = _step(f"3/5 export ONNX + OpenVINO with a parity check -> {bundle}")
    manifest = export_bundle(run_dir / "best.pt", bundle, data=data, force=True)
    timings["export_s"] = time.time() - t

    t = _step("4/5 synthesize a 10 s shelf-camera video (1280x720) and run the bundle on its shelf slots")
    video_path = out / "shelf.mp4"
    video = make_shelf_video(video_path, seconds=10, fps=15, seed=7)
    runs = {}
    for backend in ("openvino", "onnxruntime"):
        run_out = out / f"run-{backend}"
        run_out.mkdir(exist_ok=True)
        summary = run(
            bundle,
            str(video_path),
            backend=backend,
            rois=list(video.rois),
            save_video=run_out / "annotated.mp4",
            jsonl=run_out / "results.jsonl",
        )
        runs[backend] = {**summary.to_dict(), **video_accuracy(run_out / "results.jsonl", video.labels)}
    timings["run_s"] = time.time() - t

    t = _step("5/5 benchmark batch-1 latency per backend")
    bench = benchmark_bundle(bundle, runs=300)
    timings["benchmark_s"] = time.time() - t
    timings["total_s"] = time.time() - started

    result = {
        "trained": trained,
        "variants": {k: v["metrics"] for k, v in manifest["variants"].items()},
        "model": manifest["model"],
        "runs": runs,
        "benchmark": bench,
        "timings": timings,
        "slots": len(video.rois),
        "video": str(video_path),
    }
    (out / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    print_table(result, out)
    return result


def print_table(r: dict, out: Path) -> None:
    m = r["model"]
    print(
        f"\n== edgecam demo: retail shelf-slot classifier ({m['name']}, {m['gflops']:.3f} GFLOPs, "
        f"{m['params_m'] * 1000:.0f} k params)"
    )
    print(
        f"validation top-1 (PyTorch, best epoch {r['trained']['best_epoch']}): "
        f"{r['trained']['best_metrics']['top1']:.4f}"
    )
    print(f"\n{'variant':<15}{'backend':<13}{'val top-1':>10}{'agree w/ torch':>16}{'p50 ms':>9}{'p95 ms':>9}")
    for row in r["benchmark"]:
        met = r["variants"][row["variant"]]
        print(
            f"{row['variant']:<15}{row['backend']:<13}{met.get('top1', float('nan')):>10.4f}"
            f"{met['parity']['top1_agreement']:>16.4f}{row['p50_ms']:>9.3f}{row['p95_ms']:>9.3f}"
        )
    print(f"\n{'edgecam run on the shelf video':<34}{'FPS':>8}{'infer p50 ms':>14}{'slot accuracy':>15}")
    for backend, s in r["runs"].items():
        infer = s["stages"].get("infer", {}).get("p50_ms", float("nan"))
        print(f"{backend:<34}{s['fps']:>8.1f}{infer:>14.3f}{s['slot_accuracy']:>15.4f}")
    print(f"({r['slots']} slots per frame, batched into one inference per frame)")
    print(
        f"\noutputs in {out}/: bundle/, train/ (curves.png, confusion_matrix.png, metrics.csv), "
        "run-*/annotated.mp4, run-*/results.jsonl, demo.json"
    )
    print("timings: " + ", ".join(f"{k} {v:.0f}" for k, v in r["timings"].items()))
