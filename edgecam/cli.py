"""The single `edgecam` command. Each subcommand is a thin layer over a tested library function and imports
its component lazily, so the device install (no torch) can run `edgecam run` and friends."""

from __future__ import annotations

import argparse
import contextlib
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


# ---------------------------------------------------------------- data
def cmd_data_synth(args: argparse.Namespace) -> int:
    from edgecam.train.synth import synth_classification, synth_detection

    if args.format == "yolo":
        result = synth_detection(args.scenario, args.out, args.n, seed=args.seed)
    else:
        result = synth_classification(args.scenario, args.out, args.n, seed=args.seed, progress=not args.json)
    _emit(args, result, f"wrote {args.format} dataset to {args.out}: {json.dumps(result, default=str)}")
    return 0


def cmd_data_video(args: argparse.Namespace) -> int:
    from edgecam.runtime.errors import EdgecamError
    from edgecam.train.synth import make_security_video, make_shelf_video

    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        if len(size) != 2 or min(size) < 64:
            raise ValueError
    except ValueError:
        raise EdgecamError(f"--size {args.size!r} is not WIDTHxHEIGHT", fix="e.g. --size 1280x720") from None
    if args.seconds <= 0 or not 1 <= args.fps <= 120:
        raise EdgecamError("--seconds must be > 0 and --fps in 1..120", fix="e.g. --seconds 20 --fps 15")
    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise EdgecamError("the video is written as MPEG-4", path=out, fix="give an --out path ending in .mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.scenario == "retail":
        video = make_shelf_video(out, seconds=args.seconds, fps=args.fps, size=size, seed=args.seed, hard=args.hard)
    else:
        video = make_security_video(out, seconds=args.seconds, fps=args.fps, size=size, seed=args.seed, hard=args.hard)
    result = {"video": str(out), "truth": str(out.with_suffix(".json")), "frames": video.n_frames, "fps": video.fps}
    _emit(args, result, f"wrote {video.n_frames} frames to {out} (ground truth in {out.with_suffix('.json')})")
    return 0


def cmd_score_events(args: argparse.Namespace) -> int:
    from edgecam.runtime.scoring import format_table, score_events

    report = score_events(
        args.events, args.truth, args.config, args.camera, args.tolerance, args.max_delay, args.oos_seconds
    )
    text = format_table(report)
    if args.tracks:
        from edgecam.bench.track_score import format_tracks, score_tracks

        report["tracking"] = score_tracks(args.events, args.truth, args.iou)
        text += "\n" + format_tracks(report["tracking"])
    _emit(args, report, text)
    return 0


# ---------------------------------------------------------------- train / val / export
_TRAIN_FLAGS: list[tuple[str, type, str]] = [
    ("data", str, "dataset folder (ImageFolder: <class>/<images>, optional train/ and val/)"),
    ("out", str, "run folder: best.pt, last.pt, metrics.csv and plots land here"),
    ("model", str, "registered model name (see `edgecam models`)"),
    ("imgsz", int, "input size in pixels (square)"),
    ("epochs", int, "maximum number of epochs"),
    (
        "batch",
        int,
        "global batch size: images per optimizer step over all processes; under torchrun each of N processes "
        "takes batch/N, so --lr keeps its meaning and a single-process run with the same --batch is comparable",
    ),
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
    ("time_limit", float, "train for at most this many minutes (the schedule shrinks to the epochs that fit)"),
    ("val_fraction", float, "validation fraction when the data has no val/ folder"),
    ("mosaic", float, "detection: probability of a 4-image mosaic"),
    ("close_mosaic", int, "detection: turn mosaic off for the last N epochs"),
    ("cls_gain", float, "detection: weight of the classification loss"),
    ("box_gain", float, "detection: weight of the box loss"),
    ("workers", int, "data-loading worker processes"),
    ("weights", str, "start from this checkpoint (fine-tuning; a changed class list re-initialises only the heads)"),
]


def _resume_config(args: argparse.Namespace):
    """`--resume RUN_DIR`: the run's own config.yaml, unchanged (a different plan would not continue the same run)."""
    from edgecam.runtime.errors import EdgecamError
    from edgecam.train.config import load_config

    run = Path(args.resume)
    changed = [f"--{n.replace('_', '-')}" for n, _, _ in _TRAIN_FLAGS if getattr(args, n) is not None]
    changed += ["--sync-bn"] if args.sync_bn else []
    if changed or args.config:
        raise EdgecamError(
            f"--resume continues a run as it was configured; {', '.join(changed) or '--config'} cannot change it",
            path=run,
            fix="drop those flags, or start a new run (--weights RUN_DIR/last.pt starts from its weights)",
        )
    if not (run / "config.yaml").is_file():
        raise EdgecamError("not a training run folder (no config.yaml)", path=run, fix="give the --out of a run")
    from edgecam.train.loop import RESUME_FILE

    if not (run / RESUME_FILE).is_file():
        raise EdgecamError(
            "nothing to resume: no resume.pt (the run finished, or never completed an epoch)",
            path=run,
            fix="start a new run; --weights RUN_DIR/best.pt starts from its weights",
        )
    overrides = {"out": str(run), "progress": False if args.json else None}
    return load_config(run / "config.yaml", overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from edgecam.train.config import load_config

    if args.resume:
        cfg = _resume_config(args)
        return _train(args, cfg, resume=True)
    overrides: dict[str, Any] = {name: getattr(args, name) for name, _, _ in _TRAIN_FLAGS}
    overrides["task"] = args.task
    if args.no_batchnorm:
        overrides["batchnorm"] = False
    if args.sync_bn:
        overrides["sync_bn"] = True
    if args.no_augment:
        overrides["augment"] = {"flip": 0, "crop_scale": 1.0, "rotate": 0, "jitter": 0, "hue": 0, "blur": 0}
    if args.json:
        overrides["progress"] = False
    cfg = load_config(args.config, overrides)
    if not cfg.data:
        from edgecam.runtime.errors import EdgecamError

        raise EdgecamError("no dataset given", fix="pass --data DIR or set data: in the --config file")
    return _train(args, cfg, resume=False)


def _train(args: argparse.Namespace, cfg: Any, resume: bool) -> int:
    if cfg.task == "detect":
        from edgecam.train.detection.trainer import train_detector

        result = train_detector(cfg, resume=resume)
        score = (
            f"best val mAP@0.5 {result.best_metrics['map50']:.4f}, mAP@0.5:0.95 {result.best_metrics['map50_95']:.4f}"
        )
    else:
        from edgecam.train.trainer import train_classifier

        result = train_classifier(cfg, resume=resume)
        score = f"best val top-1 {result.best_metrics['top1']:.4f}"
    text = (
        f"{score} at epoch {result.best_epoch} ({result.epochs_run} epochs, {result.seconds:.0f} s)\n"
        f"{result.stop_reason}\ncheckpoint: {result.best}\nplots: {', '.join(str(p) for p in result.plots)}"
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
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
    from edgecam.export.bundle_writer import DEFAULT_VARIANTS

    variants = tuple(args.variants.split(",")) if args.variants else DEFAULT_VARIANTS
    return _export(args, variants, int8=args.int8)


def cmd_quantize(args: argparse.Namespace) -> int:
    from edgecam.export.bundle_writer import QUANTIZE_VARIANTS

    return _export(args, ("onnx-fp32", *QUANTIZE_VARIANTS[args.engine]), int8=False)


def _export(args: argparse.Namespace, variants: tuple[str, ...], int8: bool) -> int:
    """Write the bundle and print each variant's accuracy, parity and accuracy gate (INT8, bf16)."""
    from edgecam.export.bundle_writer import export_bundle

    manifest = export_bundle(
        args.checkpoint,
        args.out,
        data=args.data,
        variants=variants,
        force=args.force,
        int8=int8,
        calib=args.calib,
        max_drop=args.max_drop,
        allow_drop=args.allow_drop,
    )
    lines = [f"bundle written to {args.out}"]
    if manifest["task"] == "detect":
        lines.append(f"{'variant':<16}{'mAP50':>8}{'mAP50-95':>10}{'boxes matched':>15}{'mean IoU':>9}")
        for name, var in manifest["variants"].items():
            m, p = var["metrics"], var["metrics"]["parity"]
            maps = f"{m['map50']:>8.4f}{m['map50_95']:>10.4f}" if "map50" in m else f"{'-':>8}{'-':>10}"
            lines.append(f"{name:<16}{maps}{p['matched']:>15.4f}{p['mean_iou']:>9.3f}")
    else:
        lines.append(f"{'variant':<16}{'top-1':>8}{'parity':>9}{'max prob diff':>15}")
        for name, var in manifest["variants"].items():
            m, p = var["metrics"], var["metrics"]["parity"]
            top1 = f"{m['top1']:.4f}" if "top1" in m else "-"
            lines.append(f"{name:<16}{top1:>8}{p['top1_agreement']:>9.4f}{p['max_prob_diff']:>15.2e}")
    for name, var in manifest["variants"].items():
        if "gate" in var:
            g = var["gate"]
            verdict = "passed" if g["passed"] else "FAILED (kept by --allow-drop)"
            text = f"{name}: accuracy gate {verdict}: " + (
                f"{g['metric']} drop {g['drop']} points (allowed {g['max_drop']})"
                if g["drop"] is not None
                else f"not evaluated ({g['reason']})"
            )
            for cls, r in g["failed_classes"].items():
                text += f"; {cls} {g['class_metric']} {r['before']:.3f} -> {r['after']:.3f}"
            lines.append(text)
    _emit(args, manifest, "\n".join(lines))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from edgecam.runtime.errors import EdgecamError
    from edgecam.train.prune import format_prune_report
    from edgecam.train.prune_finetune import PruneConfig, prune_checkpoint, prune_sweep

    options = dict(
        global_pruning=args.global_pruning,
        finetune_epochs=args.finetune_epochs,
        time_limit=args.finetune_time_limit,
        distill=args.distill,
        distill_weight=args.distill_weight,
        temperature=args.temperature,
        distill_loss=args.distill_loss,
        lr=args.lr,
        data=args.data,
        latency_runs=args.latency_runs,
        onnx_latency=not args.no_onnx_latency,
        threads=args.threads,
        progress=not args.json,
    )
    if args.ratios is None:
        report = prune_checkpoint(
            args.checkpoint, args.out, PruneConfig(ratio=args.ratio, target_gflops=args.target_gflops, **options)
        )
        _emit(args, report, format_prune_report(report))
        return 0
    if args.ratio is not None or args.target_gflops is not None:
        raise EdgecamError("--ratios runs a sweep: leave out --ratio and --target-gflops")
    try:
        ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    except ValueError:
        raise EdgecamError(f"--ratios {args.ratios!r} must be comma-separated numbers, e.g. 0.25,0.5,0.7") from None
    sweep = prune_sweep(args.checkpoint, args.out, ratios, PruneConfig(**options))
    text = "\n\n".join(f"ratio {r['pruning']['ratio']:g}\n{format_prune_report(r)}" for r in sweep["runs"])
    _emit(args, sweep, f"{text}\nplot: {sweep['plot']}")
    return 0


# ---------------------------------------------------------------- device side
def cmd_run(args: argparse.Namespace) -> int:
    from edgecam.runtime.errors import EdgecamError
    from edgecam.runtime.pipeline import output_problems
    from edgecam.runtime.shutdown import GracefulStop

    # SIGTERM (systemd, Docker) as well as Ctrl-C: drain, close every output, print the summary, exit 0.
    stop = GracefulStop(args.drain_timeout).install()
    if args.config:
        single = {"BUNDLE": args.bundle, "--source": args.source, "--roi": args.roi, "--save-video": args.save_video}
        single.update({"--jsonl": args.jsonl, "--variant": args.variant, "--max-frames": args.max_frames})
        single.update({"--threads": args.threads, "--conf": args.conf, "--iou": args.iou})
        single.update({"--save-images": args.save_images, "--loop": args.loop or None, "--device": args.device})
        given = [k for k, v in single.items() if v is not None and v != []]
        if given:
            raise EdgecamError(f"--config runs the cameras of the YAML file: drop {', '.join(given)}")
        from edgecam.runtime.camera_config import load_cameras_config
        from edgecam.runtime.cameras import MultiCameraRunner

        multi = MultiCameraRunner(load_cameras_config(args.config)).run(duration=args.duration)
        stop.done()
        _emit(args, multi.to_dict(), multi.format_table())
        stopped = [c for c in multi.cameras if c["error"]]
        if stopped and len(stopped) == len(multi.cameras):  # nothing is left doing the job: a supervisor must know
            return _failed(f"every camera stopped; {stopped[0]['camera']}: {stopped[0]['error']}")
        lost = [f"{c['camera']}: {p}" for c in multi.cameras for p in output_problems(c)]
        if lost:  # data the run was asked to keep was not kept
            return _failed(lost[0])
        return 0
    if not args.bundle or not args.source:
        raise EdgecamError("give a BUNDLE and --source, or --config cameras.yaml", fix="see `edgecam run --help`")
    if args.duration is not None:
        raise EdgecamError("--duration is for --config runs", fix="use --max-frames to bound a single-source run")
    from edgecam.runtime.pipeline import run

    choice = _choose_device(args)
    summary = run(
        args.bundle,
        args.source,
        backend=choice.backend,
        device=choice.device,
        variant=choice.variant,
        rois=args.roi or None,
        save_video=args.save_video,
        save_images=args.save_images,
        loop=args.loop,
        jsonl=args.jsonl,
        max_frames=args.max_frames,
        threads=choice.threads,
        show_progress=not args.json,
        conf=args.conf,
        iou=args.iou,
    )
    stop.done()
    _emit(args, summary.to_dict(), summary.format_table())
    return _failed(summary.problems[0]) if summary.problems else 0


def _failed(why: str) -> int:
    """The run did not do its whole job: one line saying why, and exit code 1 for the supervisor."""
    print(f"edgecam run: error: {why}", file=sys.stderr, flush=True)
    return 1


def _choose_device(args: argparse.Namespace) -> Any:
    """`--device` with `--backend`, `--variant`, `--threads` (see devices/select.py); a profile made for another
    box than this one is run as asked, with a note saying so."""
    from edgecam.devices.select import choose_device

    choice = choose_device(args.device, args.backend, args.bundle, args.variant, args.threads)
    if choice.profile is not None:
        here, why = choice.profile.runs_here()
        if not here:
            print(f"edgecam {args.command}: note: profile {choice.profile.name} is not this host ({why}); running "
                  f"its {choice.backend} {choice.device} here", file=sys.stderr)  # fmt: skip
    return choice


def cmd_verify(args: argparse.Namespace) -> int:
    from edgecam.runtime.verify import verify_bundle

    backend, variant, threads, device = args.backend, args.variant, args.threads, None
    if args.device:
        choice = _choose_device(args)
        backend, variant, threads, device = choice.backend, choice.variant, choice.threads, choice.device
    report = verify_bundle(args.bundle, backend=backend, variant=variant, threads=threads, device=device)
    _emit(args, report.to_dict(), report.format())
    for problem in report.problems:
        print(f"edgecam verify: error: {problem}", file=sys.stderr)
    return 0 if report.passed else 2


def cmd_benchmark(args: argparse.Namespace) -> int:
    from edgecam.devices.benchmark import benchmark_bundle, format_rows
    from edgecam.devices.select import choose_device, is_profile
    from edgecam.runtime.errors import EdgecamError

    if args.device and is_profile(args.device):
        return _benchmark_profile(args)
    backends, device = tuple(args.backends.split(",")) if args.backends else ("onnxruntime", "openvino"), "CPU"
    if args.device:  # an engine's device name: that engine only
        if len(backends) > 1 and args.backends:
            raise EdgecamError(
                f"--device {args.device} names a device of one engine, not of {args.backends}",
                fix="give one engine with --backends, or a device profile",
            )
        choice = choose_device(args.device, args.backends or None)
        backends, device = (choice.backend,), choice.device
    rows = benchmark_bundle(
        args.bundle,
        backends,
        runs=args.runs,
        threads=args.threads,
        batch=args.batch,
        device=device,
        throughput_seconds=args.seconds,
    )
    _emit(args, rows, format_rows(rows))
    return 0


def _benchmark_profile(args: argparse.Namespace) -> int:
    """`benchmark --device PROFILE`: the profile's variants, stored beside the bundle; the rows with --json."""
    from edgecam.devices.profile_bench import benchmark_profile, format_result, store
    from edgecam.runtime.errors import EdgecamError

    if args.backends or args.threads:
        raise EdgecamError("a device profile names its backend and threads", fix="drop --backends / --threads")
    result = benchmark_profile(
        args.bundle, args.device, runs=args.runs, batch=args.batch, throughput_seconds=args.seconds
    )
    try:
        saved = store(result, args.bundle, args.out)
    except EdgecamError:  # the measurements are shown before the error: they took minutes
        _emit(args, result["rows"], format_result(result))
        raise
    if saved["plot_note"] and args.json:
        print(f"edgecam benchmark: plot {saved['plot_note']}", file=sys.stderr)
    _emit(args, result["rows"], format_result(result, saved))
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from edgecam.devices.profiles import all_profiles, format_profiles, load_profile

    profiles = [load_profile(p) for p in args.profiles] if args.profiles else all_profiles()
    _emit(args, [p.summary() for p in profiles], format_profiles(profiles))
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from edgecam.devices.package import build_package
    from edgecam.devices.profiles import load_profile

    result = build_package(args.bundle, load_profile(args.device), args.config, args.out, args.wheel, args.variant)
    text = (
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB): release {result.version}, variant {result.variant}, "
        f"{len(result.files)} files"
    )
    _emit(args, result.to_dict(), text)
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from edgecam.devices.install import install_package, rollback
    from edgecam.devices.service import ServiceControl, resolve_mode
    from edgecam.runtime.errors import EdgecamError

    root = Path(args.root).absolute()
    mode = resolve_mode(args.service, root, args.service_cmd)
    control = ServiceControl(mode, root, args.health_timeout, args.service_cmd)
    if args.rollback:
        if args.package:
            raise EdgecamError("--rollback takes no package", fix="edgecam install --rollback [--root DIR]")
        outcome = rollback(root, control)
    elif not args.package:
        raise EdgecamError("no package given", fix="edgecam install PACKAGE.tar.gz, or --rollback")
    else:
        outcome = install_package(args.package, root, control, args.python, args.find_links)
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
    else:
        print(outcome.line, file=sys.stdout if outcome.code == 0 else sys.stderr)
    return outcome.code


def _numbers(text: str | None, kind: type, flag: str) -> tuple | None:
    from edgecam.runtime.errors import EdgecamError

    if text is None:
        return None
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise EdgecamError(f"{flag} {text!r} must be comma-separated numbers", fix=f"e.g. {flag} 0,0.3,0.5") from None


def cmd_fit(args: argparse.Namespace) -> int:
    from edgecam.devices.fit import FitOptions, fit
    from edgecam.devices.fit_report import format_table

    opts = FitOptions(
        fps=args.fps,
        cameras=args.cameras,
        latency_ms=args.latency_ms,
        time_limit=args.time_limit,
        ratios=_numbers(args.ratios, float, "--ratios") or FitOptions.ratios,
        sizes=_numbers(args.sizes, int, "--sizes"),
        precisions=tuple(p.strip() for p in args.precisions.split(",") if p.strip()) if args.precisions else None,
        finetune_epochs=args.finetune_epochs,
        batch=args.batch,
        runs=args.runs,
        calib=args.calib,
        max_drop=args.max_drop,
        progress=not args.json,
    )
    out = args.out or f"runs/fit/{Path(args.device).stem}"
    result = fit(args.checkpoint, args.device, args.data, out, opts)
    _emit(args, result.report, format_table(result.report))
    if result.chosen is None:
        why = result.report["closest"] or "no candidate could be measured"
        print(f"edgecam fit: nothing meets the budget; {why}", file=sys.stderr)
    return result.exit_code


def cmd_schema(args: argparse.Namespace) -> int:
    from edgecam.runtime.config.docs import schema_json

    text = schema_json(args.what)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
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


def cmd_bench_real(args: argparse.Namespace) -> int:
    from edgecam.bench.real import real_data_section, write_section

    path = write_section(args.out, real_data_section(args.work, runs=args.runs))
    print(f"wrote the real-image section of {path}")
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    from edgecam.bench.real import write_section
    from edgecam.bench.scale import scale_section

    counts = tuple(int(c) for c in args.cameras.split(",")) if args.cameras else None
    path = write_section(args.out, scale_section(Path(args.work), Path(args.real_work), counts))
    print(f"wrote the per-frame cost and scale section of {path}")
    return 0


def cmd_bench_scenarios(args: argparse.Namespace) -> int:
    from edgecam.bench import security_accuracy
    from edgecam.bench.real import write_section
    from edgecam.bench.scenario_accuracy import run_all, section_lines

    if args.scenario in ("retail", "both"):
        results = run_all(args.work, args.bundle)
        command = (
            f"edgecam bench-scenarios --scenario retail --work {args.work} --bundle {args.bundle} --out {args.out}"
        )
        path = write_section(args.out, section_lines(results, command))
        print(f"wrote the retail scenario-accuracy section of {path}")
    if args.scenario in ("security", "both"):
        results = security_accuracy.run_all(args.work, args.detector)
        command = f"edgecam bench-scenarios --scenario security --work {args.work}" + (
            f" --detector {args.detector}" if args.detector else ""
        )
        path = write_section(args.out, security_accuracy.section_lines(results, command + f" --out {args.out}"))
        print(f"wrote the security scenario-accuracy section of {path}")
    return 0


def cmd_bench_report(args: argparse.Namespace) -> int:
    from edgecam.bench.real import SECTION as REAL
    from edgecam.bench.real import read_section, write_section
    from edgecam.bench.report import write_benchmarks
    from edgecam.bench.scale import SECTION as SCALE
    from edgecam.bench.scenario_accuracy import SECTION as SCENARIOS
    from edgecam.bench.security_accuracy import SECTION as SECURITY

    # The real-image, scale and scenario sections have their own commands: rewriting the rest keeps them.
    kept = [lines for lines in (read_section(args.out, t) for t in (REAL, SCALE, SCENARIOS, SECURITY)) if lines]
    path = write_benchmarks(args.work, args.out, runs=args.runs)
    for lines in kept:
        write_section(path, lines)
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------- parser
def _int8_options(p: argparse.ArgumentParser) -> None:
    """The INT8 options `export` and `quantize` share."""
    p.add_argument("--calib", type=int, default=300, help="calibration frames drawn from the training data")
    p.add_argument(
        "--max-drop",
        type=float,
        help="accuracy-controlled INT8: keep the most sensitive layers in float until top-1/mAP@0.5 drops at most "
        "this many points",
    )
    p.add_argument(
        "--allow-drop", action="store_true", help="write the bundle even if an INT8 gate fails (recorded in it)"
    )


RUN_EXIT_CODES = """exit codes (for a supervisor such as systemd):
  0    the run did its job: the source ended, --max-frames / --duration was reached, or SIGTERM / Ctrl-C stopped
       it and every output was finished
  1    the run did not do its job: every camera stopped, a live stream was lost for good, an output could not be
       written (a full disk); one line on stderr says why
  2    bad input: a missing file, a bad bundle or configuration
  124  a SIGTERM / Ctrl-C stop took longer than --drain-timeout
  130  a second Ctrl-C (143: a second SIGTERM) ended the run without finishing the outputs"""


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        help="a device profile (`edgecam devices`) or profile YAML: its backend, device, threads and the variant of "
        "its fastest precision the bundle has; or the engine's device: CPU, GPU, NPU, AUTO (openvino), cpu, cuda, "
        "tensorrt or a ...ExecutionProvider name (onnxruntime). A device this host lacks is an error",
    )


INSTALL_HELP = """order: every sha256 in package.json is checked before anything is unpacked (links, device files,
'..' and absolute names are refused); the release goes to ROOT/releases/VERSION; `edgecam verify` runs on it;
then ROOT/current switches and the runtime (re)starts; if /health (the config's http:) is not ok within
--health-timeout, the previous release comes back on its own. ROOT/state.json says what happened and why.

--service auto: systemd when ROOT is /opt/edgecam, edgecam runs as root and systemd is up (the unit goes to
/etc/systemd/system/edgecam.service); --service-cmd given: that command; otherwise a probe: `edgecam run --config`
of the release until /health is ok, then stopped (nothing is left running).

exit codes (for a supervisor):
  0    installed (or already current; --rollback: rolled back and serving)
  1    the new release failed (pip, verify or /health) and the previous one is current again, or nothing is
       current when there was none; one line says why
  2    bad input: a missing, tampered or unsafe package, a bad option, nothing to roll back to"""


def build_parser() -> argparse.ArgumentParser:
    from edgecam.runtime.shutdown import DRAIN_SECONDS

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
    video = data_sub.add_parser(
        "video", help="write a synthetic camera video (retail shelf or street) with its ground truth (seeded, offline)"
    )
    video.set_defaults(handler=cmd_data_video)
    video.add_argument("--scenario", choices=["retail", "security"], default="retail")
    video.add_argument("--out", required=True, help="video file to write (.mp4); ground truth goes beside it (.json)")
    video.add_argument("--seconds", type=float, default=20.0)
    video.add_argument("--fps", type=int, default=15)
    video.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    video.add_argument("--seed", type=int, default=0)
    video.add_argument(
        "--hard",
        action="store_true",
        help="retail: shoppers who stop 1-5 s, a slot emptied and restocked while hidden, lighting drift and step, "
        "camera shake; security (--seconds >= 24): a loiterer and passers at a zone, people turning back over and "
        "short of a line, a group walking close, a person hidden by a passing truck (all in the ground truth)",
    )
    video.add_argument("--json", action="store_true")

    p = add("train", cmd_train, "train a model; RUN_DIR/best.pt is the best checkpoint")
    p.add_argument("--task", choices=["classify", "detect"], default=None)
    p.add_argument("--config", help="YAML file whose keys match these flags")
    for name, typ, help_text in _TRAIN_FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=typ, default=None, help=help_text)
    p.add_argument("--no-batchnorm", action="store_true", help="train without BatchNorm")
    p.add_argument("--no-augment", action="store_true", help="turn all data augmentation off")
    p.add_argument(
        "--sync-bn",
        action="store_true",
        default=None,
        help="under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm; CUDA only, "
        "no effect in a single process)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run exactly where it stopped (its own config.yaml; no other flags)",
    )

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
    p.add_argument(
        "--int8",
        action="store_true",
        help="add openvino-int8 (NNCF), onnx-int8 (ORT QDQ u8s8) and openvino-bf16; INT8 must pass its accuracy gate",
    )
    _int8_options(p)

    p = add(
        "quantize",
        cmd_quantize,
        "INT8 bundle from a checkpoint: NNCF post-training quantization (OpenVINO) and/or ONNX QDQ u8s8, "
        "calibrated on training frames, each gated on validation accuracy against FP32",
    )
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="bundle folder to create (FP32 ONNX + the INT8 variants)")
    p.add_argument("--data", help="calibration and validation data (default: the checkpoint's training data)")
    p.add_argument("--engine", choices=["openvino", "onnxruntime", "both"], default="both", help="INT8 for which")
    p.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    _int8_options(p)

    p = add("prune", cmd_prune, "structured channel pruning + fine-tune; RUN_DIR/best.pt is the pruned checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="run folder: best.pt, prune_report.json, metrics.csv")
    p.add_argument("--ratio", type=float, help="fraction of channels to remove, in (0, 1)")
    p.add_argument("--target-gflops", type=float, help="prune in steps until the model needs at most this")
    p.add_argument("--ratios", help="sweep, e.g. 0.25,0.5,0.7: one run per ratio + accuracy_vs_gflops.png")
    p.add_argument(
        "--global",
        dest="global_pruning",
        action="store_true",
        help="rank channels across the network (default: remove the same fraction from every layer)",
    )
    p.add_argument("--finetune-epochs", type=int, default=5, help="fine-tuning epochs after pruning (0 = none)")
    p.add_argument(
        "--finetune-time-limit",
        type=float,
        help="minutes of fine-tuning at most: the epochs and learning-rate schedule shrink to fit",
    )
    p.add_argument("--distill", action="store_true", help="also learn the unpruned model's outputs")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation loss")
    p.add_argument("--temperature", type=float, default=4.0, help="classifier distillation temperature")
    p.add_argument("--distill-loss", choices=["bce", "mse"], default="bce", help="detector: loss on class scores")
    p.add_argument("--lr", type=float, help="fine-tuning learning rate (default: half the checkpoint's)")
    p.add_argument("--data", help="dataset for fine-tuning and accuracy (default: the checkpoint's training data)")
    p.add_argument("--latency-runs", type=int, default=50, help="timed batch-1 runs per model and engine")
    p.add_argument("--no-onnx-latency", action="store_true", help="time torch eager only (skips an ONNX export)")
    p.add_argument("--threads", type=int, help="torch / ONNX Runtime threads")

    p = add("run", cmd_run, "run a bundle on a camera, video file, stream URL or image folder (or several cameras)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = RUN_EXIT_CODES
    p.add_argument("bundle", nargs="?", help="bundle folder (not with --config)")
    p.add_argument("--source", help="video file, camera index, rtsp:// or http:// URL, image folder")
    p.add_argument("--config", type=Path, help="cameras YAML: several cameras, shared models, scenarios, MQTT, HTTP")
    p.add_argument("--duration", type=_positive_float, help="with --config: stop after this many seconds")
    p.add_argument(
        "--drain-timeout",
        type=_positive_float,
        default=DRAIN_SECONDS,
        help="seconds a SIGTERM / Ctrl-C may take to finish the outputs before the run exits at once with code 124 "
        "(default: %(default)s)",
    )
    p.add_argument("--backend", choices=["openvino", "onnxruntime"], help="inference engine (default: openvino)")
    _device_option(p)
    p.add_argument("--variant", help="bundle variant to run")
    p.add_argument("--roi", type=_roi, action="append", help="x,y,w,h region to classify (repeatable)")
    p.add_argument("--save-video", type=Path, help="write an annotated video (.mp4 or .avi)")
    p.add_argument(
        "--save-images",
        type=Path,
        help="image folders: write one annotated image per input image into this folder, under the input's name",
    )
    p.add_argument("--loop", action="store_true", help="video files: replay from the start forever (a live demo)")
    p.add_argument("--jsonl", type=Path, help="write per-frame results as JSON lines")
    p.add_argument("--max-frames", type=_positive_int, help="stop after this many frames")
    p.add_argument("--threads", type=_positive_int, help="inference threads")
    p.add_argument("--conf", type=float, help="detection score threshold (default: the bundle's)")
    p.add_argument("--iou", type=float, help="detection NMS IoU threshold (default: the bundle's)")

    p = add("score-events", cmd_score_events, "precision, recall and delay of a run's events against a video's truth")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "matching rules: see edgecam/runtime/scoring.py (python -m pydoc edgecam.runtime.scoring)"
    p.add_argument("events", type=Path, help="the run's JSON lines (edgecam run --jsonl, or a jsonl sink)")
    p.add_argument("--truth", type=Path, required=True, help="the video's ground truth (.json from edgecam data video)")
    p.add_argument("--config", type=Path, help="cameras YAML with the camera's slots or zones and lines")
    p.add_argument("--camera", help="which camera of --config (needed when it has several)")
    p.add_argument("--tolerance", type=float, default=2.0, help="seconds an event may be early or late (%(default)s)")
    p.add_argument(
        "--max-delay",
        type=float,
        help="seconds an event may come after the true change (default: oos_seconds + tolerance for out_of_stock, "
        "the tolerance for the others; time a slot is occluded is added)",
    )
    p.add_argument("--oos-seconds", type=float, help="the retail oos_seconds (default: --config's, else 10)")
    p.add_argument("--tracks", action="store_true", help="street: also MOTA, IDF1, ID switches (needs the bench extra)")
    p.add_argument("--iou", type=float, default=0.5, help="with --tracks: IoU a box needs to match (%(default)s)")

    p = add("verify", cmd_verify, "device self-test: every file's sha256, then the golden frames on each backend")
    p.add_argument("bundle")
    p.add_argument("--backend", help="only this engine (default: every backend that can run each variant)")
    _device_option(p)
    p.add_argument("--variant", help="only this variant (default: all)")
    p.add_argument("--threads", type=int, help="inference threads")

    p = add(
        "benchmark",
        cmd_benchmark,
        "inference latency of every variant per backend; with --device PROFILE, every variant the profile runs "
        "(load time, first inference, p50/p95/p99, async throughput, peak RSS, accuracy, budget), stored in "
        "BUNDLE/benchmarks/<host>/<profile>.json",
    )
    p.add_argument("bundle")
    p.add_argument("--backends", help="comma-separated engines (default: onnxruntime,openvino)")
    _device_option(p)
    p.add_argument("--runs", type=_positive_int, default=200, help="timed runs per variant")
    p.add_argument("--threads", type=_positive_int)
    p.add_argument("--batch", type=int, default=1, help="inputs per call, e.g. 20 slot crops of one frame")
    p.add_argument("--seconds", type=float, default=3.0, help="async throughput measured for this long (0: skipped)")
    p.add_argument("--out", type=Path, help="with a profile: store the results here, not in BUNDLE/benchmarks/<host>/")

    add("models", cmd_models, "list the registered model families")

    p = add("devices", cmd_devices, "device profiles: engine, device, precisions, budget, whether this host runs them")
    p.add_argument("profiles", nargs="*", help="profile names or your own profile YAMLs (default: every shipped one)")

    p = add("package", cmd_package, "one archive for a device: the profile's variant, config, wheel, unit, checksums")
    p.add_argument("bundle", help="bundle folder (the variant the profile runs is packaged, re-sealed)")
    p.add_argument("--device", required=True, help="device profile name or YAML (see `edgecam devices`)")
    p.add_argument("--config", required=True, type=Path, help="cameras YAML whose cameras run this bundle")
    p.add_argument("--out", required=True, type=Path, help="package file to write (.tar.gz)")
    p.add_argument("--variant", help="package this variant instead of the profile's fastest precision")
    p.add_argument("--wheel", type=Path, help="edgecam wheel to ship (default: built from this source tree)")

    p = add(
        "install", cmd_install, "install a package as a new release: verify, switch, (re)start, roll back on failure"
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = INSTALL_HELP
    p.add_argument("package", nargs="?", help="the .tar.gz written by `edgecam package`")
    p.add_argument("--root", default="/opt/edgecam", help="install root: releases/, current, data/, state.json")
    p.add_argument("--rollback", action="store_true", help="make the previous release current again")
    p.add_argument(
        "--python",
        choices=["venv", "current"],
        default="venv",
        help="venv: a virtualenv per release with the packaged wheel and its requirements (default); current: "
        "this interpreter's edgecam runs the release (a box that already has edgecam; the wheel is not installed)",
    )
    p.add_argument("--find-links", help="with --python venv: a folder of wheels for pip (an offline box)")
    p.add_argument(
        "--service",
        choices=["auto", "systemd", "command", "probe", "none"],
        default="auto",
        help="how the release is (re)started and checked (default auto: see below)",
    )
    p.add_argument("--service-cmd", help="command that restarts the runtime, e.g. 'docker restart edgecam'")
    p.add_argument(
        "--health-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds the new release has to answer /health with 200 (default: %(default)s)",
    )

    p = add(
        "fit",
        cmd_fit,
        "search prune ratio x input size x precision for the most accurate variant that meets a device's budget; "
        "writes OUT/bundle, OUT/fit.json and OUT/fit.png (exit 1 when nothing meets it)",
    )
    p.add_argument("checkpoint")
    p.add_argument("--device", required=True, help="device profile name (see `edgecam devices`) or your profile YAML")
    p.add_argument("--data", required=True, help="the dataset: fine-tuning, calibration and validation accuracy")
    p.add_argument("--fps", type=float, help="budget: frames per second per camera (with --cameras)")
    p.add_argument("--cameras", type=int, help="budget: cameras served at --fps each")
    p.add_argument("--latency-ms", type=float, help="budget: one inference's latency instead of fps")
    p.add_argument("--time-limit", type=float, default=10.0, help="minutes for the search (%(default)s)")
    p.add_argument("--out", help="output folder (default runs/fit/PROFILE)")
    p.add_argument("--ratios", help="pruning ratios to try (default 0,0.3,0.5)")
    p.add_argument("--sizes", help="input sizes to try (default: the model's and half, e.g. 64,32)")
    p.add_argument("--precisions", help="fp32,fp16,bf16,int8,int8-ac (default: the profile's; int8 both ways)")
    p.add_argument("--finetune-epochs", type=_positive_int, default=1, help="epochs per prune / resize fine-tune")
    p.add_argument("--batch", type=_positive_int, default=1, help="inputs per inference call (slot crops)")
    p.add_argument("--runs", type=_positive_int, default=100, help="timed runs per candidate")
    p.add_argument("--calib", type=_positive_int, default=300, help="INT8 calibration frames")
    p.add_argument("--max-drop", type=float, default=0.5, help="accuracy-controlled INT8: points it may lose")

    p = add("schema", cmd_schema, "print the JSON Schema of cameras.yaml or of a bundle's edgecam.json")
    p.add_argument("what", choices=["cameras", "manifest"])
    p.add_argument("--out", type=Path, help="write it to this file instead of stdout")

    p = add("bench-report", cmd_bench_report, "benchmark the demo bundle side by side and write BENCHMARKS.md")
    p.add_argument("--work", default="runs/demo", help="demo folder (built first when missing)")
    p.add_argument("--out", default="BENCHMARKS.md")
    p.add_argument("--runs", type=int, default=500)

    p = add(
        "bench-real",
        cmd_bench_real,
        "train edgecam's defaults and reference models (YOLOv8n, MobileNetV3-Small) on real-image sets; write their "
        "section of BENCHMARKS.md",
    )
    p.add_argument("--work", default="runs/bench-real", help="sets, runs and the reference virtualenv (reused)")
    p.add_argument("--out", default="BENCHMARKS.md")
    p.add_argument("--runs", type=int, default=200, help="timed runs per latency measurement")

    p = add(
        "bench-scale",
        cmd_bench_scale,
        "per-frame cost, engine vs benchmark_app, file mode vs the ideal, and a camera sweep; write their section of "
        "BENCHMARKS.md (needs make bench-real's bundles)",
    )
    p.add_argument("--work", default="runs/bench-scale", help="videos and intermediate results")
    p.add_argument("--real-work", default="runs/bench-real", help="where make bench-real left its bundles")
    p.add_argument("--cameras", default=None, help="camera counts to sweep, e.g. 8,12,16 (default 8,12,16,20,24)")
    p.add_argument("--out", default="BENCHMARKS.md")

    p = add(
        "bench-scenarios",
        cmd_bench_scenarios,
        "retail alert accuracy (precision, recall, delay, occluder false alarms) on tuning and held-out synthetic "
        "shelf videos, normal and hard (needs make demo's bundle); security: zone, line and loitering events and "
        "tracking (MOTA, IDF1, ID switches) on street videos; write their sections of BENCHMARKS.md",
    )
    p.add_argument("--scenario", choices=["retail", "security", "both"], default="both")
    p.add_argument("--work", default="runs/bench-scenarios", help="videos, their cameras.yaml, JSONL and results")
    p.add_argument("--bundle", default="runs/demo/bundle", help="the slot classifier (stocked / low / empty)")
    p.add_argument(
        "--detector",
        help="security: a trained person/vehicle detector bundle, measured beside the truth-box detector",
    )
    p.add_argument("--out", default="BENCHMARKS.md")

    p = add("demo", cmd_demo, "the end-to-end demo: synth data, train, export, run on a shelf video")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--n", type=int, default=3000, help="synthetic images")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--time-limit", type=float, default=4.0, help="training minutes at most")
    return parser


def _follower_rank() -> int:
    """Under torchrun with several processes, this process's rank when it is not rank 0 (else 0): rank 0 alone
    prints results, warnings and progress; the others only their errors."""
    try:
        return int(os.environ.get("RANK", 0)) if int(os.environ.get("WORLD_SIZE", 1)) > 1 else 0
    except ValueError:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edgecam.runtime.errors import EdgecamError
    from edgecam.runtime.redact import mask_text  # an error naming a camera URL never shows its password

    rank = _follower_rank()
    who = f"edgecam {args.command}" + (f" (rank {rank})" if rank else "")
    try:
        if not rank:
            return args.handler(args)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return args.handler(args)
    except EdgecamError as exc:
        print(f"{who}: error: {mask_text(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `edgecam ... --json | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: one line, and the traceback on request
        if os.environ.get("EDGECAM_DEBUG"):
            raise
        print(
            f"{who}: internal error: {type(exc).__name__}: {mask_text(exc)} "
            "(set EDGECAM_DEBUG=1 for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
