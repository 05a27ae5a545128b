"""`make bench`: measure the demo classifier and the synthetic-retail detector side by side; write BENCHMARKS.md.

Each variant is timed in its own process: two engines in one process disturb each other's threads.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgecam.bench.runtime_report import runtime_section

# YOLOv8n at 320x320 on a 2-core Zen 4 (shared/reference/peer-latency-2cpu.md), for context only.
PEER = {"name": "YOLOv8n@320", "gflops": 2.19, "onnxruntime fp32": 13.5, "openvino int8": 4.85, "openvino f32": 12.0}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _edgecam_json(*args: str) -> Any:
    cmd = [sys.executable, "-m", "edgecam", *args, "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def _header(runs: int) -> list[str]:
    import onnxruntime
    import openvino

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {dt.date.today().isoformat()}: {_cpu_name()}, {cores} cores, "
        f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
        f"openvino {openvino.get_version().split('-')[0]}. Each variant timed in its own process, batch 1, "
        f"{runs} runs after warm-up; medians and p95. Timings on shared machines are noisy: compare ratios "
        "within one run.",
        "",
    ]


def variant_rows(bundle: Path, runs: int, batch: int = 1, variants: list[str] | None = None) -> list[dict[str, Any]]:
    """Every variant (or those named) on the engine that validated it, each measured in a separate process."""
    manifest = json.loads((bundle / "edgecam.json").read_text())
    rows = []
    for name, var in manifest["variants"].items():
        if variants is not None and name not in variants:
            continue
        measured = _edgecam_json(
            "benchmark", str(bundle), "--backends", var["backend"], "--runs", str(runs), "--batch", str(batch)
        )
        for r in measured:
            if r["variant"] == name:
                rows.append({**r, "bundle": bundle})
    return rows


def pruned_label(manifest: dict[str, Any]) -> str:
    """'full', or how much pruning removed: GFLOPs (what the target is about) and the channel ratio that did it."""
    pruned = manifest["source"].get("pruned")
    if not pruned:
        return "full"
    cut = 1 - manifest["model"]["gflops"] / pruned["base"]["gflops"] if pruned.get("base") else None
    flops = f"-{cut:.0%} GFLOPs, " if cut is not None else ""
    return f"pruned ({flops}{pruned['channel_ratio']:.0%} ch.)"


def speedup_table(full: Path, pruned: Path, runs: int, batches: tuple[int, ...]) -> list[str]:
    """Pruned vs full latency per variant, backend and batch. Each measurement is its own process, and the two
    models of a row are measured one right after the other, so the ratio compares like with like on a busy machine."""
    lines = [
        "| variant | backend | batch | full p50 ms | pruned p50 ms | pruned speed-up |",
        "|---|---|---|---|---|---|",
    ]
    names = list(json.loads((full / "edgecam.json").read_text())["variants"])
    in_pruned = set(json.loads((pruned / "edgecam.json").read_text())["variants"])
    for batch in batches:
        for name in (n for n in names if n in in_pruned):
            f_row = variant_rows(full, runs, batch, [name])
            p_row = variant_rows(pruned, runs, batch, [name])
            for f, p in zip(f_row, p_row, strict=True):
                lines.append(
                    f"| {name} | {f['backend']} | {batch} | {f['p50_ms']:.3f} | {p['p50_ms']:.3f} "
                    f"| {f['p50_ms'] / p['p50_ms']:.2f}x |"
                )
    return lines


def engine_precision(engine: dict[str, Any], precision: str) -> str:
    """What the engine really ran: OpenVINO's hint reads f32 for an INT8 IR, so INT8 convolutions are counted."""
    shown = engine.get("engine_precision", precision)
    convs = engine.get("conv_precisions") or {}
    int8 = sum(n for p, n in convs.items() if p in ("u8", "i8"))
    return f"int8 ({int8}/{sum(convs.values())} convs), {shown} rest" if int8 else shown


def bundle_table(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """One markdown table over the rows of one or more bundles (pruned bundles are labelled as such)."""
    base = next((r["p50_ms"] for r in rows if r["variant"] == "onnx-fp32" and "pruned" not in r), None)
    label = {"top1": "val top-1", "map50": "val mAP@0.5"}[metric]
    lines = [
        f"| model | variant | backend | engine precision | {label} | p50 ms | p95 ms | FPS (1 request) "
        "| FPS (2 streams) | vs ORT FP32 | size KB | GFLOPs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        manifest = json.loads((r["bundle"] / "edgecam.json").read_text())
        met = manifest["variants"][r["variant"]]["metrics"]
        eng = engine_precision(r["engine"], r["precision"])
        value = met.get(metric)
        shown = f"{value:.4f}" if isinstance(value, float) else "-"
        ratio = f"{base / r['p50_ms']:.2f}x" if base else "-"
        tput = f"{r['throughput_fps']:.0f}" if r.get("throughput_fps") else "-"
        model = pruned_label(manifest)
        lines.append(
            f"| {model} | {r['variant']} | {r['backend']} | {eng} | {shown} | {r['p50_ms']:.3f} | {r['p95_ms']:.3f} "
            f"| {r['fps']:.0f} | {tput} | {ratio} | {r['size_kb']:.0f} | {manifest['model']['gflops']:.4f} |"
        )
    return lines


def int8_bundle(checkpoint: Path, data: Path, out: Path) -> Path:
    """Every variant, INT8 ones included (gates enforced), exported once and kept."""
    if not (out / "edgecam.json").is_file():
        from edgecam.export.bundle_writer import DEFAULT_VARIANTS, export_bundle

        export_bundle(checkpoint, out, data=data, variants=DEFAULT_VARIANTS, int8=True, force=True)
    return out


# The compression target: at least half the GFLOPs gone, at most 1 point of top-1 / mAP@0.5 lost after fine-tuning.
GFLOPS_KEPT = 0.5


def pruned_bundle(checkpoint: Path, data: Path, work: Path, epochs: int, time_limit: float | None = None) -> Path:
    """The fewest channels removed that halve the GFLOPs, fine-tuned with distillation from the full model for
    `epochs` (fewer if `time_limit` minutes run out), exported with INT8."""
    from edgecam.train.checkpoint import load_checkpoint
    from edgecam.train.flops import count_flops
    from edgecam.train.prune_finetune import PruneConfig, prune_checkpoint

    run = work / "pruned"
    if not (run / "best.pt").is_file():
        model, meta = load_checkpoint(checkpoint)
        target = GFLOPS_KEPT * count_flops(model, meta["preprocess_spec"].input_shape)["gflops"]
        pcfg = PruneConfig(
            target_gflops=target,
            finetune_epochs=epochs,
            time_limit=time_limit,
            distill=True,
            data=str(data),
            onnx_latency=False,
        )
        prune_checkpoint(checkpoint, run, pcfg)
    return int8_bundle(run / "best.pt", data, work / "bundle-pruned")


def prune_summary(work: Path, metric: str) -> str:
    """One sentence from the prune report: GFLOPs and metric before / after, fine-tune epochs and time."""
    r = json.loads((work / "pruned" / "prune_report.json").read_text())
    b, a, ft = r["before"], r["after"], r["finetune"]
    name = {"top1": "top-1", "map50": "mAP@0.5"}[metric]
    return (
        f"Pruned to {a['gflops']:.4g} of {b['gflops']:.4g} GFLOPs (-{r['gflops_reduction']:.0%}, "
        f"{r['pruning']['channel_ratio']:.0%} of the channels) and fine-tuned with distillation for "
        f"{ft['epochs_run']} epochs / {ft['seconds'] / 60:.1f} min (best epoch {ft['best_epoch']}): "
        f"{name} {b[metric]:.4f} -> {a[metric]:.4f} ({100 * (a[metric] - b[metric]):+.1f} points; target >= -1)."
    )


def classifier_bundles(work: Path) -> tuple[Path, Path]:
    """The demo classifier with every variant, and pruned to half its GFLOPs."""
    data, ckpt = work / "data" / "retail-slots", work / "train" / "best.pt"
    return int8_bundle(ckpt, data, work / "bundle-int8"), pruned_bundle(ckpt, data, work, epochs=3)


def classifier_rows(work: Path, runs: int) -> list[dict[str, Any]]:
    full, pruned = classifier_bundles(work)
    return variant_rows(full, runs) + variant_rows(pruned, runs)


def classifier_section(work: Path, runs: int) -> list[str]:
    bundle = work / "bundle"
    if not (bundle / "edgecam.json").is_file() or not (work / "shelf.mp4").is_file():
        from edgecam.demo import run_demo

        run_demo(work)
    manifest = json.loads((bundle / "edgecam.json").read_text())
    video = json.loads((work / "shelf.json").read_text())
    m, pre = manifest["model"], manifest["preprocess"]
    lines = [
        f"## Shelf-slot classifier ({m['name']}, {pre['height']}x{pre['width']}, {m['gflops']:.4f} GFLOPs, "
        f"{m['params_m'] * 1000:.0f} k params; trained by `make demo`)",
        "",
        *bundle_table(classifier_rows(work, runs), "top1"),
        "",
        prune_summary(work, "top1"),
        "",
        f"Pruned vs full at batch 1 and at the runtime's batch ({len(video['rois'])} slot crops of a frame in one "
        "call, as `edgecam run` sends them): at batch 1 this model is overhead-bound.",
        "",
        *speedup_table(*classifier_bundles(work), runs, (1, len(video["rois"]))),
        "",
        f"`edgecam run` on the demo shelf video ({video['size'][0]}x{video['size'][1]}, {video['n_frames']} frames, "
        f"{len(video['rois'])} slot ROIs batched per frame), stage times in ms:",
        "",
        "| backend | FPS | read p50 | preprocess p50 | infer p50 | infer p95 | postprocess p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    rois = [f"--roi={x},{y},{w},{h}" for x, y, w, h in video["rois"]]
    for backend in ("onnxruntime", "openvino"):
        s = _edgecam_json("run", str(bundle), "--source", str(work / "shelf.mp4"), "--backend", backend, *rois)
        st = s["stages"]

        def p(stage: str, key: str = "p50_ms", st: dict = st) -> str:
            return f"{st[stage][key]:.3f}" if stage in st else "-"

        lines.append(
            f"| {backend} | {s['fps']:.1f} | {p('read')} | {p('preprocess')} | {p('infer')} | {p('infer', 'p95_ms')} "
            f"| {p('postprocess')} |"
        )
    return [*lines, ""]


# Fine-tuning the pruned detector: up to this many epochs, within this many minutes (the plan shrinks to fit).
DETECTOR_FINETUNE_EPOCHS, DETECTOR_FINETUNE_MINUTES = 20, 10.0


def build_detector(work: Path, minutes: float = 10.0) -> Path:
    """Synthetic retail scenes -> ecdet_s trained for at most `minutes` (kept for later runs)."""
    from edgecam.train.config import load_config
    from edgecam.train.detection.trainer import train_detector
    from edgecam.train.synth import synth_detection

    data, run = work / "data", work / "train"
    if not (data / "data.yaml").is_file():
        synth_detection("retail", data, 800, seed=0)
    if not (run / "results.json").is_file():
        cfg = load_config(
            None, dict(task="detect", data=str(data / "data.yaml"), out=str(run), epochs=30, time_limit=minutes)
        )
        train_detector(cfg)
    return run / "best.pt"


def detector_section(work: Path, runs: int) -> list[str]:
    ckpt = build_detector(work)
    data = work / "data" / "data.yaml"
    bundle = int8_bundle(ckpt, data, work / "bundle-int8")
    pruned = pruned_bundle(ckpt, data, work, epochs=DETECTOR_FINETUNE_EPOCHS, time_limit=DETECTOR_FINETUNE_MINUTES)
    manifest = json.loads((bundle / "edgecam.json").read_text())
    trained = json.loads((work / "train" / "results.json").read_text())
    m, pre = manifest["model"], manifest["preprocess"]
    rows = variant_rows(bundle, runs)
    lines = [
        f"## Retail detector ({m['name']}, {pre['height']}x{pre['width']}, {m['gflops']:.3f} GFLOPs, "
        f"{m['params_m']:.3f} M params)",
        "",
        f"Trained from scratch on 640 synthetic retail scenes ({len(manifest['class_names'])} classes) for "
        f"{trained['epochs_run']} epochs / {trained['seconds'] / 60:.1f} min on this machine; best epoch "
        f"{trained['best_epoch']}: mAP@0.5 {trained['best_metrics']['map50']:.4f}, "
        f"mAP@0.5:0.95 {trained['best_metrics']['map50_95']:.4f} (pycocotools, 160 val scenes). The table's mAP "
        f"is each variant's own, measured at export on {manifest['parity']['frames']} val scenes.",
        "",
        *bundle_table(rows + variant_rows(pruned, runs), "map50"),
        "",
        prune_summary(work, "map50"),
        "",
        *speedup_table(bundle, pruned, runs, (1,)),
        "",
        f"Context: {PEER['name']} is {PEER['gflops']} GFLOPs and measured {PEER['onnxruntime fp32']} ms with ONNX "
        f"Runtime FP32, {PEER['openvino f32']} ms with OpenVINO f32 and {PEER['openvino int8']} ms with OpenVINO "
        "INT8 on the same kind of machine (reference table, not this run).",
    ]
    for variant, peer in (("onnx-fp32", "onnxruntime fp32"), ("openvino-int8", "openvino int8")):
        row = next((r for r in rows if r["variant"] == variant), None)
        if row:
            lines.append(
                f"- {variant}: {row['p50_ms']:.2f} ms = {row['p50_ms'] / PEER[peer]:.2f}x YOLOv8n's reference "
                f"{PEER[peer]} ms (target <= 0.33x)."
            )
    per_class = manifest["variants"]["onnx-fp32"]["metrics"].get("per_class", {})
    if per_class:
        lines += [
            "",
            "Per-class AP (ONNX Runtime FP32 variant, export-time validation):",
            "",
            "| class | AP@0.5 | AP@0.5:0.95 | recall@0.5 | boxes |",
            "|---|---|---|---|---|",
        ]
        for name, c in per_class.items():
            if c["ap50"] is not None:
                lines.append(f"| {name} | {c['ap50']:.3f} | {c['ap50_95']:.3f} | {c['recall50']:.3f} | {c['gt']} |")
    return [*lines, ""]


def write_benchmarks(
    work: str | Path, out: str | Path, runs: int = 500, detector_work: str | Path | None = None
) -> Path:
    """Benchmark the demo classifier and the detector (each built first when missing) into one markdown file."""
    work, out = Path(work), Path(out)
    det_work = Path(detector_work) if detector_work else work.parent / "bench-detector"
    lines = _header(runs) + classifier_section(work, runs) + detector_section(det_work, runs)
    lines += runtime_section(det_work, det_work / "bundle-int8")
    lines += ["Reproduce with `make bench` (or `edgecam benchmark BUNDLE` for one bundle).", ""]
    out.write_text("\n".join(lines))
    return out
