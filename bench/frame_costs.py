"""Per-frame CPU cost outside inference, for the BENCHMARKS.md section "Per-frame cost outside inference".

Measured in this process with OpenCV on one thread (restored afterwards): (a) decoding a 1280x720 H.264 frame
with OpenCV's FFmpeg reader, (b) the detector preprocessing of that frame to a 320x320 letterbox tensor
(`preprocess_batch`), (c) `decode_detections` end to end on a raw 320 output (2100 anchors x (4 + 10 classes)) with
about 100 anchors above the confidence threshold, clustered on objects as a trained detector's are. The
implementations before the fused preprocessing and the pair-wise NMS are kept below, here only, and timed in the
same loop, alternating, so that a busy machine slows both alike; their outputs are checked equal to today's.
Each stage has its own loop, so its data stays in cache (a micro-benchmark); interleaved with the other stages, as in a
pipeline, both implementations of a stage take longer.

    from edgecam.bench.frame_costs import frame_costs, markdown
    print(markdown(frame_costs(runs=1000)))

or `python -m edgecam.bench.frame_costs --runs 1000 [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecam.runtime.decode import anchor_points, batched_nms, box_iou, decode_boxes, decode_detections
from edgecam.runtime.preprocess import Letterbox, PreprocessSpec, preprocess_batch, resize_image
from edgecam.runtime.stats import percentiles
from edgecam.runtime.types import Detections

INPUT_SIZE, STRIDES, NUM_CLASSES = 320, (8, 16, 32), 10
FRAME_W, FRAME_H = 1280, 720
SPEC = PreprocessSpec.square(INPUT_SIZE, resize="letterbox", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def synthetic_detector_output(
    boxes: int = 100,
    num_classes: int = NUM_CLASSES,
    input_size: int = INPUT_SIZE,
    strides: tuple[int, ...] = STRIDES,
    seed: int = 0,
) -> np.ndarray:
    """A raw (A, 4 + C) detector output with `boxes` anchors above a 0.25 confidence, in clusters of up to 12
    anchors per object (jittered boxes of one class), the rest background logits far below the threshold.

    Random boxes spread over the image would leave NMS little to do; a trained detector fires several anchors per
    object, which is what NMS costs on."""
    rng = np.random.default_rng(seed)
    points, point_strides = anchor_points(input_size, input_size, strides)
    preds = np.empty((points.shape[0], 4 + num_classes), np.float32)
    preds[:, :4] = rng.normal(0.5, 0.5, (points.shape[0], 4))
    preds[:, 4:] = rng.normal(-8.0, 1.0, (points.shape[0], num_classes))  # sigmoid < 0.25 by far
    placed, taken = 0, np.zeros(points.shape[0], bool)
    while placed < boxes:
        w, h = rng.uniform(16, input_size / 2, 2)
        cx, cy = rng.uniform(0, input_size, 2)
        obj = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        near = (np.abs(points[:, 0] - cx) < w / 4) & (np.abs(points[:, 1] - cy) < h / 4) & ~taken
        anchors = rng.permutation(np.flatnonzero(near))[: min(12, boxes - placed)]
        cls = rng.integers(0, num_classes)
        for i in anchors:
            box = obj + rng.normal(0, 0.06, 4) * [w, h, w, h]
            dist = np.array(
                [points[i, 0] - box[0], points[i, 1] - box[1], box[2] - points[i, 0], box[3] - points[i, 1]]
            )
            if np.any(dist <= 0):
                continue
            preds[i, :4] = np.log(dist / point_strides[i])
            preds[i, 4 + cls] = rng.uniform(-1.0, 3.0)  # sigmoid 0.27 .. 0.95
            taken[i] = True
            placed += 1
    return preds


# --- before: the implementations these replaced, kept here only to time them side by side ---------------------


def old_preprocess_batch(images: list[np.ndarray], spec: PreprocessSpec) -> tuple[np.ndarray, list[Letterbox]]:
    """resize + uint8 canvas + paste, then split and convert/subtract/multiply each plane with cv2."""
    batch = np.empty((len(images), 3, spec.height, spec.width), dtype=np.float32)
    boxes = []
    interp = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}[spec.interpolation]
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        if spec.resize == "stretch":
            canvas = cv2.resize(image, (spec.width, spec.height), interpolation=interp)
            box = Letterbox(spec.width / w, spec.height / h, 0.0, 0.0)
        else:
            scale = min(spec.width / w, spec.height / h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
            pad_x, pad_y = (spec.width - nw) // 2, (spec.height - nh) // 2
            canvas = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
            canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized
            box = Letterbox(scale, scale, float(pad_x), float(pad_y))
        planes = cv2.split(canvas)
        if spec.color == "rgb":
            planes = planes[::-1]
        mean = np.asarray(spec.mean, np.float32) * 255.0
        inv = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
        for c, plane in enumerate(planes):
            channel = batch[i, c]
            channel[...] = plane
            cv2.subtract(channel, float(mean[c]), dst=channel)
            cv2.multiply(channel, float(inv[c]), dst=channel)
        boxes.append(box)
    return batch, boxes


def _old_pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    inter = np.minimum.outer(x2, x2)
    inter -= np.maximum.outer(x1, x1)
    np.maximum(inter, 0, out=inter)
    h = np.minimum.outer(y2, y2)
    h -= np.maximum.outer(y1, y1)
    np.maximum(h, 0, out=h)
    inter *= h
    union = np.add.outer(area, area)
    union -= inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def old_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray | None, iou: float, max_out: int) -> np.ndarray:
    """IoU matrix, upper triangle, then a Python loop over the rows that overlap something (boxes <= 256)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    over = np.triu(_old_pairwise_iou(boxes) > iou, k=1)
    if groups is not None:
        g = groups[order]
        over &= g[:, None] == g[None, :]
    suppressed = np.zeros(len(order), dtype=bool)
    for i in np.flatnonzero(over.any(axis=1)):
        if not suppressed[i]:
            suppressed |= over[i]
    return order[np.flatnonzero(~suppressed)[:max_out]].astype(np.int64)


def old_decode_detections(
    preds: np.ndarray, conf: float, iou: float, max_det: int, letterbox: Letterbox, orig_size: tuple[int, int]
) -> Detections:
    """The decode before: column-wise max, separate gathers, matrix NMS, fancy-indexed letterbox undo."""
    points, point_strides = anchor_points(INPUT_SIZE, INPUT_SIZE, STRIDES)
    logits = preds[:, 4:]
    best = logits[:, 0].copy()
    for c in range(1, logits.shape[1]):
        np.maximum(best, logits[:, c], out=best)
    candidates = np.flatnonzero(best > math.log(conf / (1 - conf)) - 1e-4)
    scores = 1.0 / (1.0 + np.exp(-np.clip(best[candidates], -50, 50, dtype=np.float32)))
    passing = scores > conf
    candidates, scores = candidates[passing], scores[passing]
    if not candidates.size:
        return Detections.empty()
    class_ids = logits[candidates].argmax(axis=1)
    dist = np.exp(np.clip(preds[candidates, :4], -8.0, 8.0)) * point_strides[candidates][:, None]
    pts = points[candidates]
    boxes = np.concatenate([pts - dist[:, :2], pts + dist[:, 2:]], axis=1).astype(np.float32, copy=False)
    keep = old_nms(boxes, scores, class_ids, iou, max_det)
    out = boxes[keep].copy()
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - letterbox.pad_x) / letterbox.scale_x, 0, orig_size[0])
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - letterbox.pad_y) / letterbox.scale_y, 0, orig_size[1])
    scores, class_ids = scores[keep], class_ids[keep]
    visible = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return Detections(out[visible], scores[visible], class_ids[visible])


# --- the clip ----------------------------------------------------------------------------------------------------


def _write_clip(folder: Path, frames: int) -> tuple[Path, str]:
    """A 1280x720 25 FPS clip with moving content and sensor-like noise: H.264 (libx264, yuv420p, GOP 50) through
    ffmpeg when it is installed, else MPEG-4 part 2 through cv2.VideoWriter (the pip OpenCV has no H.264 encoder)."""
    if shutil.which("ffmpeg"):
        path = folder / "clip.mp4"
        source = f"testsrc2=size={FRAME_W}x{FRAME_H}:rate=25,noise=alls=8:allf=t"
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-frames:v", str(frames)]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", "50", "-pix_fmt", "yuv420p", str(path)]
        if subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0:
            return path, "H.264 (libx264 crf 23, GOP 50)"
    path = folder / "clip_mp4v.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (FRAME_W, FRAME_H))
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8), (FRAME_W, FRAME_H))
    for i in range(frames):
        frame = np.roll(base, 8 * i, axis=1)
        writer.write(cv2.add(frame, rng.integers(0, 12, frame.shape, dtype=np.uint8)))
    writer.release()
    return path, "MPEG-4 part 2 (mp4v; ffmpeg with libx264 not found)"


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot read {path}")
    return cap


def _time_reads(path: Path, runs: int) -> tuple[list[float], np.ndarray]:
    """Seconds per cap.read() over `runs` frames, reopening the clip at its end (the reopen is not timed)."""
    times, frame, cap = [], None, _open(path)
    while len(times) < runs:
        t0 = time.perf_counter()
        ok, image = cap.read()
        t1 = time.perf_counter()
        if not ok:
            cap.release()
            cap = _open(path)
            continue
        times.append(t1 - t0)
        frame = image if frame is None else frame
    cap.release()
    return times, frame


# --- the measurement -----------------------------------------------------------------------------------------------


def _alternate(pairs: dict[str, Callable[[], Any]], runs: int, warmup: int = 20) -> dict[str, list[float]]:
    """Time each callable `runs` times, interleaved (order rotating every round) so load hits them alike."""
    names = list(pairs)
    for _ in range(warmup):
        for name in names:
            pairs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            pairs[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def _summary(seconds: list[float]) -> dict[str, float]:
    pct = percentiles((s * 1000.0 for s in seconds), digits=4)
    return {"p50_ms": pct["p50"], "p95_ms": pct["p95"], "runs": len(seconds)}


def frame_costs(runs: int = 1000, boxes: int = 100, video_frames: int = 250, seed: int = 0) -> dict[str, Any]:
    """Median and p95 (ms) of each per-frame stage outside inference, today's implementation and the one before,
    on one OpenCV thread. Also checks that both give the same tensor and detections on the measured inputs."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="edgecam-frame-costs-") as tmp:
            clip, codec = _write_clip(Path(tmp), video_frames)
            read_times, frame = _time_reads(clip, runs)

        preds = synthetic_detector_output(boxes=boxes, seed=seed)
        _, letterbox = resize_image(frame, SPEC)
        orig = (frame.shape[1], frame.shape[0])
        conf, iou, max_det = 0.25, 0.5, 300
        args = (INPUT_SIZE, INPUT_SIZE), conf, iou, max_det, letterbox, orig
        # One loop per stage (before and after alternating in it): each stage is timed with its own data in cache,
        # as a micro-benchmark; a pipeline interleaves them, which costs both implementations more.
        times = _alternate(
            {
                "preprocess": lambda: preprocess_batch([frame], SPEC),
                "preprocess_before": lambda: old_preprocess_batch([frame], SPEC),
            },
            runs,
        )
        times |= _alternate(
            {
                "decode": lambda: decode_detections(preds, STRIDES, *args),
                "decode_before": lambda: old_decode_detections(preds, *args[1:]),
            },
            runs,
        )
        new_batch, new_boxes = preprocess_batch([frame], SPEC)
        old_batch, old_boxes = old_preprocess_batch([frame], SPEC)
        new_dets = decode_detections(preds, STRIDES, (INPUT_SIZE,) * 2, conf, iou, max_det, letterbox, orig)
        old_dets = old_decode_detections(preds, conf, iou, max_det, letterbox, orig)
        nms = _nms_comparison(preds, conf, iou, runs)
    finally:
        cv2.setNumThreads(threads)
    stages = {"video_decode": _summary(read_times)} | {name: _summary(t) for name, t in times.items()}
    return {
        "stages": stages,
        "nms": nms,
        "candidates": int(np.count_nonzero(preds[:, 4:].max(axis=1) > math.log(conf / (1 - conf)))),
        "detections": len(new_dets),
        "preprocess_max_abs_diff": float(np.abs(new_batch - old_batch).max()),
        "preprocess_same_letterbox": new_boxes == old_boxes,
        "decode_identical": bool(
            np.array_equal(new_dets.xyxy, old_dets.xyxy)
            and np.array_equal(new_dets.scores, old_dets.scores)
            and np.array_equal(new_dets.class_ids, old_dets.class_ids)
        ),
        "video": {"codec": codec, "size": f"{FRAME_W}x{FRAME_H}", "frames_in_clip": video_frames},
        "spec": SPEC.to_dict(),
        "opencv_threads": 1,
        "runs": runs,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
    }


def _nms_comparison(preds: np.ndarray, conf: float, iou: float, runs: int) -> dict[str, Any]:
    """edgecam's class-aware NMS vs cv2.dnn.NMSBoxesBatched on the same candidates (NMS alone)."""
    points, point_strides = anchor_points(INPUT_SIZE, INPUT_SIZE, STRIDES)
    logits = preds[:, 4:]
    candidates = np.flatnonzero(logits.max(axis=1) > math.log(conf / (1 - conf)))
    scores = (1.0 / (1.0 + np.exp(-logits[candidates].max(axis=1)))).astype(np.float32)
    classes = logits[candidates].argmax(axis=1)
    boxes = decode_boxes(preds[candidates, :4], points[candidates], point_strides[candidates])
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
    times = _alternate(
        {
            "numpy": lambda: batched_nms(boxes, scores, classes, iou),
            "cv2": lambda: cv2.dnn.NMSBoxesBatched(xywh, scores, classes, 0.0, iou),
        },
        runs,
    )
    ours = batched_nms(boxes, scores, classes, iou).tolist()
    theirs = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores, classes, 0.0, iou)).reshape(-1).tolist()
    return {
        "boxes": int(candidates.size),
        "numpy": _summary(times["numpy"]),
        "cv2_NMSBoxesBatched": _summary(times["cv2"]),
        "same_result_here": ours == theirs,
        "max_iou_kept": float(np.triu(box_iou(boxes[ours], boxes[ours]), k=1).max(initial=0.0)),
    }


def markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for `frame_costs()`'s result."""
    s = result["stages"]

    def row(label: str, key: str, before: str | None) -> str:
        now = f"| {label} | {s[key]['p50_ms']:.3f} | {s[key]['p95_ms']:.3f} |"
        if before is None:
            return now + " - | - |"
        return now + f" {s[before]['p50_ms']:.3f} | {s[before]['p95_ms']:.3f} |"

    nms = result["nms"]
    spec = result["spec"]
    lines = [
        "## Per-frame cost outside inference",
        "",
        f"One camera frame's CPU time around the model, in one process, OpenCV on {result['opencv_threads']} thread "
        f"(OpenCV {result['opencv']}, numpy {result['numpy']}, {result['machine']}); median and p95 of "
        f"{result['runs']} runs, today's implementation and the one before timed alternately in one loop per stage "
        "(a micro-benchmark: each stage's data stays in cache; between a pipeline's other stages both take longer).",
        "",
        "| stage | p50 ms | p95 ms | before: p50 ms | before: p95 ms |",
        "|---|---|---|---|---|",
        row(f"read + decode one {result['video']['size']} frame ({result['video']['codec']})", "video_decode", None),
        row(
            f"detector preprocessing, {result['video']['size']} BGR -> {spec['height']}x{spec['width']} "
            f"{spec['resize']}, normalised NCHW float32",
            "preprocess",
            "preprocess_before",
        ),
        row(
            f"decode + class-aware NMS, {result['candidates']} candidates above conf 0.25 "
            f"-> {result['detections']} detections",
            "decode",
            "decode_before",
        ),
        "",
        f"Same outputs: preprocessing max |difference| {result['preprocess_max_abs_diff']:g} with the same letterbox "
        f"({result['preprocess_same_letterbox']}); detections identical ({result['decode_identical']}). "
        f"NMS alone on those {nms['boxes']} boxes: edgecam {nms['numpy']['p50_ms']:.3f} ms, "
        f"cv2.dnn.NMSBoxesBatched {nms['cv2_NMSBoxesBatched']['p50_ms']:.3f} ms (p50; same boxes here: "
        f"{nms['same_result_here']}; it computes IoU in float64 on x, y, w, h, so results near the IoU threshold can "
        "differ from the float32 IoU training validation uses, and edgecam keeps its own).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the raw result here")
    args = parser.parse_args(argv)
    result = frame_costs(runs=args.runs)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
