"""The single `edgecam` command. Each subcommand is a thin layer over a tested library function and imports
its component lazily, so the device install (no torch) can run `edgecam run` and friends."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecam import __version__

Handler = Callable[[argparse.Namespace], int]


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """`--json` prints one JSON document on stdout; otherwise the human table."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def _roi(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"ROI {text!r} must be x,y,w,h in pixels, e.g. 100,50,80,120") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"ROI {text!r} needs a positive width and height")
    return x, y, w, h


# ---------------------------------------------------------------- data
def cmd_data_synth(args: argparse.Namespace) -> int:
    from edgecam.train.synth import synth_classification, synth_detection

    if args.format == "yolo":
        result = synth_detection(args.scenario, args.out, args.n, seed=args.seed)
    else:
        result = synth_classification(args.scenario, args.out, args.n, seed=args.seed, progress=not args.json)
    _emit(args, result, f"wrote {args.format} dataset to {args.out}: {json.dumps(result, default=str)}")
    return 0


# ---------------------------------------------------------------- train / val / export
_TRAIN_FLAGS: list[tuple[str, type, str]] = [
    ("data", str, "dataset folder (ImageFolder: <class>/<images>, optional train/ and val/)"),
    ("out", str, "run folder: best.pt, last.pt, metrics.csv and plots land here"),
    ("model", str, "registered model name (see `edgecam models`)"),
    ("imgsz", int, "input size in pixels (square)"),
    ("epochs", int, "maximum number of epochs"),
    ("batch", int, "batch size"),
    ("optimizer", str, "adamw or sgd"),
    ("lr", float, "peak learning rate"),
    ("scheduler", str, "cosine or onecycle"),
    ("label_smoothing", float, "label smoothing"),
    ("dropout", float, "dropout before the classifier"),
    ("pooling", str, "global pooling: avg or max"),
    ("weight_decay", float, "L2 penalty (decoupled for AdamW)"),
    ("l1", float, "L1 penalty on weights"),
    ("input_noise", float, "std of Gaussian noise on the normalised input"),
    ("hidden_noise", float, "std of Gaussian noise on the last feature map"),
    ("patience", int, "early stopping: epochs without improvement (0 = off)"),
    ("width", float, "width multiplier override"),
    ("seed", int, "random seed"),
    ("threads", int, "torch threads"),
    ("time_limit", float, "train for at most this many minutes (no epoch starts that would end past it)"),
    ("val_fraction", float, "validation fraction when the data has no val/ folder"),
    ("mosaic", float, "detection: probability of a 4-image mosaic"),
    ("close_mosaic", int, "detection: turn mosaic off for the last N epochs"),
    ("workers", int, "data-loading worker processes"),
]


def cmd_train(args: argparse.Namespace) -> int:
    from edgecam.train.config import load_config

    overrides: dict[str, Any] = {name: getattr(args, name) for name, _, _ in _TRAIN_FLAGS}
    overrides["task"] = args.task
    if args.no_batchnorm:
        overrides["batchnorm"] = False
    if args.no_augment:
        overrides["augment"] = {"flip": 0, "crop_scale": 1.0, "rotate": 0, "jitter": 0, "hue": 0, "blur": 0}
    if args.json:
        overrides["progress"] = False
    cfg = load_config(args.config, overrides)
    if not cfg.data:
        from edgecam.runtime.errors import EdgecamError

        raise EdgecamError("no dataset given", fix="pass --data DIR or set data: in the --config file")
    if cfg.task == "detect":
        from edgecam.train.detection.trainer import train_detector

        result = train_detector(cfg)
        score = (
            f"best val mAP@0.5 {result.best_metrics['map50']:.4f}, mAP@0.5:0.95 {result.best_metrics['map50_95']:.4f}"
        )
    else:
        from edgecam.train.trainer import train_classifier

        result = train_classifier(cfg)
        score = f"best val top-1 {result.best_metrics['top1']:.4f}"
    text = (
        f"{score} at epoch {result.best_epoch} ({result.epochs_run} epochs, {result.seconds:.0f} s)\n"
        f"checkpoint: {result.best}\nplots: {', '.join(str(p) for p in result.plots)}"
    )
    _emit(args, result.to_dict(), text)
    return 0


def _is_bundle(path: str) -> bool:
    p = Path(path)
    return p.is_dir() or p.name == "edgecam.json"


def _task_of(path: str) -> str:
    if _is_bundle(path):
        from edgecam.runtime.bundle import load_bundle

        return load_bundle(path).task
    import torch

    from edgecam.runtime.errors import EdgecamError

    try:
        return str(torch.load(path, map_location="cpu", weights_only=True).get("task", "classify"))
    except Exception:  # the loaders below give the precise error
        raise EdgecamError("not a readable edgecam checkpoint", path=path) from None


def cmd_val(args: argparse.Namespace) -> int:
    from edgecam.runtime.errors import EdgecamError

    if not Path(args.model).exists():
        raise EdgecamError(
            "no such checkpoint or bundle", path=args.model, fix="give RUN_DIR/best.pt or a bundle folder"
        )
    bundle = _is_bundle(args.model)
    if _task_of(args.model) == "detect":
        from edgecam.train.detection import validate
        from edgecam.train.detection.evaluate import format_detection_report as fmt

        if bundle:
            report = validate.evaluate_detection_bundle(args.model, args.data, args.backend, args.variant)
        else:
            report = validate.evaluate_detection_checkpoint(args.model, args.data)
        report.pop("pr_curves", None)
    else:
        from edgecam.runtime.evaluate import format_report as fmt

        if bundle:
            from edgecam.runtime.evaluate import evaluate_bundle

            report = evaluate_bundle(args.model, args.data, backend=args.backend, variant=args.variant)
        else:
            from edgecam.train.evaluate import evaluate_checkpoint

            report = evaluate_checkpoint(args.model, args.data)
    _emit(args, report, f"{args.model} [{report['variant']} on {report['backend']}]\n{fmt(report)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgecam.export.bundle_writer import DEFAULT_VARIANTS, export_bundle

    variants = tuple(args.variants.split(",")) if args.variants else DEFAULT_VARIANTS
    manifest = export_bundle(args.checkpoint, args.out, data=args.data, variants=variants, force=args.force)
    lines = [f"bundle written to {args.out}"]
    if manifest["task"] == "detect":
        lines.append(f"{'variant':<16}{'mAP50':>8}{'mAP50-95':>10}{'boxes matched':>15}{'min IoU':>9}")
        for name, var in manifest["variants"].items():
            m, p = var["metrics"], var["metrics"]["parity"]
            maps = f"{m['map50']:>8.4f}{m['map50_95']:>10.4f}" if "map50" in m else f"{'-':>8}{'-':>10}"
            lines.append(f"{name:<16}{maps}{p['matched']:>15.4f}{p['min_iou']:>9.3f}")
    else:
        lines.append(f"{'variant':<16}{'top-1':>8}{'parity':>9}{'max prob diff':>15}")
        for name, var in manifest["variants"].items():
            m, p = var["metrics"], var["metrics"]["parity"]
            top1 = f"{m['top1']:.4f}" if "top1" in m else "-"
            lines.append(f"{name:<16}{top1:>8}{p['top1_agreement']:>9.4f}{p['max_prob_diff']:>15.2e}")
    _emit(args, manifest, "\n".join(lines))
    return 0


# ---------------------------------------------------------------- device side
def cmd_run(args: argparse.Namespace) -> int:
    from edgecam.runtime.pipeline import run

    summary = run(
        args.bundle,
        args.source,
        backend=args.backend,
        variant=args.variant,
        rois=args.roi or None,
        save_video=args.save_video,
        jsonl=args.jsonl,
        max_frames=args.max_frames,
        threads=args.threads,
        show_progress=not args.json,
        conf=args.conf,
        iou=args.iou,
    )
    _emit(args, summary.to_dict(), summary.format_table())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from edgecam.runtime.verify import verify_bundle

    report = verify_bundle(args.bundle, backend=args.backend, variant=args.variant, threads=args.threads)
    _emit(args, report.to_dict(), report.format())
    for problem in report.problems:
        print(f"edgecam verify: error: {problem}", file=sys.stderr)
    return 0 if report.passed else 2


def cmd_benchmark(args: argparse.Namespace) -> int:
    from edgecam.devices.benchmark import benchmark_bundle, format_rows

    rows = benchmark_bundle(args.bundle, tuple(args.backends.split(",")), runs=args.runs, threads=args.threads)
    _emit(args, rows, format_rows(rows))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from edgecam.train.registry import list_models, model_task

    names = list_models()
    _emit(args, {n: model_task(n) for n in names}, "\n".join(f"{n:<16}{model_task(n)}" for n in names))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edgecam.demo import run_demo

    result = run_demo(args.out, n=args.n, epochs=args.epochs, time_limit=args.time_limit)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_bench_report(args: argparse.Namespace) -> int:
    from edgecam.devices.report import write_benchmarks

    path = write_benchmarks(args.work, args.out, runs=args.runs)
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecam",
        description="Train, compress, export and run compact CNNs on camera streams.",
        epilog="Every command that reports numbers takes --json. Set EDGECAM_DEBUG=1 to see tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"edgecam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        return p

    data = sub.add_parser("data", help="datasets: the built-in scene generator")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="write a synthetic retail or security dataset (seeded, offline)")
    synth.set_defaults(handler=cmd_data_synth)
    synth.add_argument("--scenario", choices=["retail", "security"], default="retail")
    synth.add_argument("--out", required=True, help="empty or new folder")
    synth.add_argument("--n", type=int, default=3000, help="number of images")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--format",
        choices=["imagefolder", "yolo"],
        default="imagefolder",
        help="imagefolder: classification crops/frames; yolo: full scenes with boxes",
    )
    synth.add_argument("--json", action="store_true")

    p = add("train", cmd_train, "train a model; RUN_DIR/best.pt is the best checkpoint")
    p.add_argument("--task", choices=["classify", "detect"], default=None)
    p.add_argument("--config", help="YAML file whose keys match these flags")
    for name, typ, help_text in _TRAIN_FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=typ, default=None, help=help_text)
    p.add_argument("--no-batchnorm", action="store_true", help="train without BatchNorm")
    p.add_argument("--no-augment", action="store_true", help="turn all data augmentation off")

    p = add("val", cmd_val, "accuracy of a checkpoint or any bundle variant, with the same code")
    p.add_argument("model", help="CHECKPOINT (.pt) or BUNDLE folder")
    p.add_argument(
        "--data",
        required=True,
        help="classifier: ImageFolder (its val/ folder when present); detector: data.yaml or COCO JSON",
    )
    p.add_argument("--backend", default="openvino", help="engine for a bundle: onnxruntime or openvino")
    p.add_argument("--variant", help="bundle variant (default: the manifest's first the backend can run)")

    p = add("export", cmd_export, "export a checkpoint to a bundle: ONNX, OpenVINO IR, parity check, manifest")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="bundle folder to create")
    p.add_argument("--data", help="validation images for parity and per-variant accuracy (default: the training data)")
    p.add_argument("--variants", help="comma-separated, default onnx-fp32,openvino-fp32,openvino-fp16")
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")

    p = add("run", cmd_run, "run a bundle on a camera, video file, stream URL or image folder")
    p.add_argument("bundle")
    p.add_argument("--source", required=True, help="video file, camera index, rtsp:// or http:// URL, image folder")
    p.add_argument("--backend", default="openvino", choices=["openvino", "onnxruntime"])
    p.add_argument("--variant", help="bundle variant to run")
    p.add_argument("--roi", type=_roi, action="append", help="x,y,w,h region to classify (repeatable)")
    p.add_argument("--save-video", type=Path, help="write an annotated video (.mp4 or .avi)")
    p.add_argument("--jsonl", type=Path, help="write per-frame results as JSON lines")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--conf", type=float, help="detection score threshold (default: the bundle's)")
    p.add_argument("--iou", type=float, help="detection NMS IoU threshold (default: the bundle's)")

    p = add("verify", cmd_verify, "device self-test: every file's sha256, then the golden frames on each backend")
    p.add_argument("bundle")
    p.add_argument("--backend", help="only this engine (default: every backend that can run each variant)")
    p.add_argument("--variant", help="only this variant (default: all)")
    p.add_argument("--threads", type=int, help="inference threads")

    p = add("benchmark", cmd_benchmark, "batch-1 latency of every variant per backend")
    p.add_argument("bundle")
    p.add_argument("--backends", default="onnxruntime,openvino")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--threads", type=int)

    add("models", cmd_models, "list the registered model families")

    p = add("bench-report", cmd_bench_report, "benchmark the demo bundle side by side and write BENCHMARKS.md")
    p.add_argument("--work", default="runs/demo", help="demo folder (built first when missing)")
    p.add_argument("--out", default="BENCHMARKS.md")
    p.add_argument("--runs", type=int, default=500)

    p = add("demo", cmd_demo, "the end-to-end demo: synth data, train, export, run on a shelf video")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--n", type=int, default=3000, help="synthetic images")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--time-limit", type=float, default=4.0, help="training minutes at most")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edgecam.runtime.errors import EdgecamError

    try:
        return args.handler(args)
    except EdgecamError as exc:
        print(f"edgecam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `edgecam ... --json | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"edgecam {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: one line, and the traceback on request
        if os.environ.get("EDGECAM_DEBUG"):
            raise
        print(
            f"edgecam {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(set EDGECAM_DEBUG=1 for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
