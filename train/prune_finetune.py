"""`edgecam prune`: prune a checkpoint, fine-tune it (optionally distilling from the unpruned model), measure both
and write RUN_DIR/best.pt + prune_report.json; `prune_sweep` does it for several ratios and plots metric vs GFLOPs.

The trainers' loops build their own model and have no hook for an extra loss term, so the fine-tune loop is a compact
one here, built from the trainers' pieces (datasets, optimizer, scheduler, loss, EMA, validation, CSV).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train.checkpoint import load_checkpoint, save_checkpoint
from edgecam.train.config import TrainConfig
from edgecam.train.prune import (
    PRUNED_KEY,
    channel_widths,
    check_prune_args,
    compare_latency,
    model_stats,
    plot_metric_vs_gflops,
    prune_model,
)
from edgecam.train.trainer import append_csv, build_optimizer, build_scheduler, l1_penalty, seed_everything

# checkpoint keys `save_checkpoint` writes itself; anything else (e.g. "detect") is carried over as an extra
_CORE_KEYS = {"edgecam_version", "task", "model", "class_names", "preprocess", "epoch", "metrics", "config"}


@dataclass
class PruneConfig:
    """Everything `edgecam prune` takes besides the checkpoint and the run folder."""

    ratio: float | None = None  # fraction of channels to remove
    target_gflops: float | None = None  # or: prune in steps until the model needs at most this
    global_pruning: bool = False  # rank channels across the network instead of removing `ratio` of each layer
    finetune_epochs: int = 5
    distill: bool = False  # fine-tune towards the unpruned model's outputs as well as the labels
    distill_weight: float = 1.0
    temperature: float = 4.0  # classifier: softening of both softmaxes
    distill_loss: str = "bce"  # detector: bce (teacher sigmoid as soft target) | mse (on sigmoids)
    lr: float | None = None  # None: the checkpoint's training learning rate
    data: str | None = None  # None: the checkpoint's training data
    latency_runs: int = 50
    onnx_latency: bool = True
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        """Ratio / target are checked by `prune_checkpoint` (a sweep's shared config sets neither)."""
        checks = [
            (self.finetune_epochs >= 0, "--finetune-epochs must be >= 0"),
            (self.temperature > 0 and self.distill_weight >= 0, "--temperature > 0 and --distill-weight >= 0"),
            (self.distill_loss in ("bce", "mse"), "--distill-loss must be bce or mse"),
            (self.lr is None or self.lr > 0, "--lr must be positive"),
            (self.latency_runs >= 1, "--latency-runs must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise EdgecamError(f"invalid prune options: {msg}")


def distill_classifier(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened softmaxes, scaled by T^2 so gradients keep their size."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), log_target=True, reduction="batchmean"
    ) * (t * t)


def distill_detector(student: torch.Tensor, teacher: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Match the class logits `preds[..., 4:]` of every anchor: BCE against the teacher's sigmoid, or MSE."""
    s, t = student[..., 4:], teacher[..., 4:].sigmoid()
    if kind == "mse":
        return F.mse_loss(s.sigmoid(), t)
    return F.binary_cross_entropy_with_logits(s, t)


@dataclass
class _TaskParts:
    """What differs between fine-tuning a classifier and a detector; the loop is shared."""

    loader: DataLoader
    start_epoch: Callable[[int], None]
    loss: Callable[[torch.Tensor, Any], torch.Tensor]  # (outputs, batch) -> task loss
    distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (student, teacher outputs) -> loss
    evaluate: Callable[[nn.Module], dict[str, Any]]
    metric: str  # the headline metric of the report
    score: Callable[[dict[str, Any]], float]  # what picks best.pt, as in the task's trainer
    ema: bool
    clip: float | None


def _classify_parts(cfg: TrainConfig, spec: PreprocessSpec, classes: tuple[str, ...], pcfg: PruneConfig) -> _TaskParts:
    from edgecam.runtime.imagefolder import load_splits
    from edgecam.train.data import ClassificationDataset
    from edgecam.train.trainer import evaluate

    train_split, val_split = load_splits(cfg.data, cfg.val_fraction, cfg.seed)
    if tuple(train_split.classes) != classes:
        raise EdgecamError(f"the data's classes {train_split.classes} differ from the checkpoint's {classes}")
    train_ds = ClassificationDataset(train_split, spec, cfg.augment, cfg.seed, "training images")
    val_dl = DataLoader(ClassificationDataset(val_split, spec, None, cfg.seed, "validation images"), batch_size=128)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_ds, batch_size=cfg.batch, shuffle=True, generator=gen, drop_last=len(train_ds) > cfg.batch
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def evaluate_top1(model: nn.Module) -> dict[str, Any]:
        report = evaluate(model, val_dl, nn.CrossEntropyLoss(), classes)
        return {"top1": report["top1"], "val_loss": report["loss"]}

    return _TaskParts(
        loader=loader,
        start_epoch=train_ds.set_epoch,
        loss=lambda out, batch: criterion(out, batch[1]),
        distill=lambda s, t: distill_classifier(s, t, pcfg.temperature),
        evaluate=evaluate_top1,
        metric="top1",
        score=lambda m: m["top1"],
        ema=False,
        clip=None,
    )


def _detect_parts(cfg: TrainConfig, spec: PreprocessSpec, meta: dict[str, Any], pcfg: PruneConfig) -> _TaskParts:
    from edgecam.train.detection.datasets import load_detection_data
    from edgecam.train.detection.loss import DetectionLoss
    from edgecam.train.detection.trainer import detection_loader, fitness
    from edgecam.train.detection.validate import evaluate_detector, load_val_images

    strides = list(meta["detect"]["strides"])
    det_train, det_val = load_detection_data(cfg.data, "train"), load_detection_data(cfg.data, "val")
    train_ds, loader = detection_loader(det_train, spec, cfg)
    val_images = load_val_images(det_val)
    criterion = DetectionLoss(len(det_train.class_names), tuple(strides))

    def start_epoch(epoch: int) -> None:
        if cfg.close_mosaic and epoch > cfg.epochs - cfg.close_mosaic:
            train_ds.close_mosaic()
        train_ds.set_epoch(epoch)

    def evaluate_map(model: nn.Module) -> dict[str, Any]:
        model.eval()

        @torch.no_grad()
        def predict(batch: np.ndarray) -> np.ndarray:
            return model(torch.from_numpy(batch)).numpy()

        report, _ = evaluate_detector(predict, det_val, spec, strides, images=val_images)
        return {"map50": report["map50"] or 0.0, "map50_95": report["map50_95"] or 0.0}

    return _TaskParts(
        loader=loader,
        start_epoch=start_epoch,
        loss=lambda out, batch: criterion(out, batch[1], (spec.height, spec.width))[0],
        distill=lambda s, t: distill_detector(s, t, pcfg.distill_loss),
        evaluate=evaluate_map,
        metric="map50",
        score=fitness,
        ema=cfg.ema,
        clip=10.0,
    )


def finetune(
    student: nn.Module,
    teacher: nn.Module | None,
    parts: _TaskParts,
    cfg: TrainConfig,
    pcfg: PruneConfig,
    csv_path: Path,
    initial: dict[str, Any],
) -> tuple[int, dict[str, Any], list[dict[str, float]]]:
    """Train the pruned model for `cfg.epochs`; keep the best validation weights, where epoch 0 (`initial`, the
    metrics straight after pruning) competes too."""
    from edgecam.train.ema import ModelEMA

    seed_everything(cfg.seed)
    student.to(memory_format=torch.channels_last)  # faster depthwise convolutions on CPU, as in the trainers
    best_epoch, best = 0, initial
    best_state = copy.deepcopy(student.state_dict())
    rows: list[dict[str, float]] = []
    if pcfg.finetune_epochs < 1:
        return best_epoch, best, rows
    opt = build_optimizer(student, cfg)
    sched = build_scheduler(opt, cfg, len(parts.loader))
    ema = ModelEMA(student, tau=max(50.0, len(parts.loader) * 2)) if parts.ema else None
    start = time.time()
    for epoch in range(1, cfg.epochs + 1):
        parts.start_epoch(epoch)
        student.train()
        totals: dict[str, float] = {"loss": 0.0, "distill": 0.0}
        steps = 0
        bar = tqdm(parts.loader, desc=f"fine-tune {epoch}/{cfg.epochs}", leave=False, disable=not pcfg.progress)
        for batch in bar:
            x = batch[0]
            if cfg.input_noise > 0:
                x = x + torch.randn_like(x) * cfg.input_noise
            x = x.contiguous(memory_format=torch.channels_last)
            out = student(x)
            loss = parts.loss(out, batch)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(x)
                kd = parts.distill(out, target)
                loss = loss + pcfg.distill_weight * kd
                totals["distill"] += float(kd.detach())
            if cfg.l1 > 0:
                loss = loss + cfg.l1 * l1_penalty(student)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if parts.clip:
                nn.utils.clip_grad_norm_(student.parameters(), parts.clip)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(student)
            steps += 1
            totals["loss"] += float(loss.detach())
            bar.set_postfix(loss=f"{totals['loss'] / steps:.3f}")
        evaluated = ema.ema if ema is not None else student
        metrics = parts.evaluate(evaluated)
        row = {
            "epoch": epoch,
            "train_loss": totals["loss"] / max(steps, 1),
            "distill_loss": totals["distill"] / max(steps, 1),
            **{k: float(v) for k, v in metrics.items()},
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.time() - start,
        }
        rows.append(row)
        append_csv(csv_path, row, first=epoch == 1)
        if parts.score(metrics) > parts.score(best):
            best_epoch, best, best_state = epoch, metrics, copy.deepcopy(evaluated.state_dict())
        if pcfg.progress:
            tqdm.write(
                f"fine-tune {epoch:3d}  loss {row['train_loss']:.4f}  {parts.metric} {metrics[parts.metric]:.4f}"
            )
    student.load_state_dict(best_state)
    return best_epoch, best, rows


def _train_config(meta: dict[str, Any], pcfg: PruneConfig, out: Path) -> TrainConfig:
    """The checkpoint's own training settings, with the fine-tune's epochs, run folder and overrides."""
    cfg = TrainConfig.from_dict(dict(meta.get("config") or {"task": meta["task"]}))
    changes: dict[str, Any] = {"epochs": max(1, pcfg.finetune_epochs), "out": str(out), "progress": pcfg.progress}
    changes["warmup_epochs"] = min(cfg.warmup_epochs, changes["epochs"] / 2)
    if pcfg.data:
        changes["data"] = pcfg.data
    if pcfg.lr:
        changes["lr"] = pcfg.lr
    if pcfg.threads:
        changes["threads"] = pcfg.threads
    return replace(cfg, **changes)


def prune_checkpoint(checkpoint: str | Path, out: str | Path, pcfg: PruneConfig) -> dict[str, Any]:
    """Prune + fine-tune + measure; writes RUN_DIR/best.pt (a checkpoint `load_checkpoint` rebuilds) and
    RUN_DIR/prune_report.json, and returns the report."""
    check_prune_args(pcfg.ratio, pcfg.target_gflops)
    out = Path(out)
    teacher, meta = load_checkpoint(checkpoint)
    cfg = _train_config(meta, pcfg, out)
    has_data = bool(cfg.data) and Path(cfg.data).exists()
    if pcfg.finetune_epochs > 0 and not has_data:
        raise EdgecamError(
            f"fine-tuning needs the training data, and {cfg.data or 'none'!r} is not there",
            path=checkpoint,
            fix="pass --data DIR, or --finetune-epochs 0 to only prune",
        )
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        out.mkdir(parents=True, exist_ok=True)
        report = _prune_and_measure(teacher, meta, cfg, pcfg, out, has_data)
    finally:
        torch.set_num_threads(threads)  # a library call must not leave the process's thread count changed
    report = {"checkpoint": str(checkpoint), **report}
    (out / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _prune_and_measure(
    teacher: nn.Module, meta: dict[str, Any], cfg: TrainConfig, pcfg: PruneConfig, out: Path, has_data: bool
) -> dict[str, Any]:
    spec: PreprocessSpec = meta["preprocess_spec"]
    shape = spec.input_shape
    student = copy.deepcopy(teacher)
    record = prune_model(
        student, shape, ratio=pcfg.ratio, target_gflops=pcfg.target_gflops, global_pruning=pcfg.global_pruning
    )
    previous = meta.get(PRUNED_KEY)
    if previous:  # pruning a pruned checkpoint: replaying both histories in order rebuilds it
        record = {**record, "history": previous["history"] + record["history"], "base": previous["base"]}

    parts: _TaskParts | None = None
    if has_data and meta["task"] == "classify":
        parts = _classify_parts(cfg, spec, tuple(meta["class_names"]), pcfg)
    elif has_data:
        parts = _detect_parts(cfg, spec, meta, pcfg)
    before_metrics = parts.evaluate(teacher) if parts else {}
    pruned_only = parts.evaluate(student) if parts else {}
    best_epoch, after_metrics, rows = 0, dict(pruned_only), []
    if parts:
        distill_from = teacher if pcfg.distill else None
        best_epoch, after_metrics, rows = finetune(
            student, distill_from, parts, cfg, pcfg, out / "metrics.csv", pruned_only
        )
    student = student.eval().to(memory_format=torch.contiguous_format)

    extra = {k: v for k, v in meta.items() if k not in _CORE_KEYS | {"preprocess_spec", PRUNED_KEY}}
    save_checkpoint(
        out / "best.pt",
        student,
        name=meta["model"]["name"],
        args=meta["model"]["args"],
        task=meta["task"],
        class_names=tuple(meta["class_names"]),
        spec=spec,
        epoch=best_epoch,
        metrics=after_metrics,
        config=cfg.to_dict(),
        extra={**extra, PRUNED_KEY: record},
    )
    _check_reload(out / "best.pt", student, shape)

    latency = compare_latency({"before": teacher, "after": student}, shape, pcfg.latency_runs, onnx=pcfg.onnx_latency)
    before = {**model_stats(teacher, shape), **latency["before"], **before_metrics}
    after = {**model_stats(student, shape), **latency["after"], **after_metrics}
    widths_before, widths_after = channel_widths(teacher), channel_widths(student)
    return {
        "pruned_checkpoint": str(out / "best.pt"),
        "task": meta["task"],
        "model": meta["model"]["name"],
        "input_shape": list(shape),
        "threads": torch.get_num_threads(),
        "pruning": {k: v for k, v in record.items() if k not in ("history", "base", "format")},
        "finetune": {
            "epochs": pcfg.finetune_epochs if parts else 0,
            "best_epoch": best_epoch,
            "distill": pcfg.distill,
            "distill_weight": pcfg.distill_weight,
            "distill_loss": pcfg.distill_loss if meta["task"] == "detect" else f"kl (T={pcfg.temperature:g})",
            "lr": cfg.lr,
            "data": cfg.data if has_data else None,
        },
        "metric": parts.metric if parts else None,
        "before": before,
        "after": after,
        "pruned_before_finetune": pruned_only,
        "gflops_reduction": round(1 - after["gflops"] / before["gflops"], 4),
        "speedup": {k[: -len("_ms")]: round(before[k] / after[k], 3) for k in before if k.endswith("_ms")},
        "channels": {n: [w, widths_after[n]] for n, w in widths_before.items()},
        "history": rows,
    }


def _check_reload(path: Path, model: nn.Module, shape: tuple[int, int, int]) -> None:
    """The file must rebuild the very model just pruned: fail now, not at export time."""
    reloaded, _ = load_checkpoint(path)
    x = torch.rand(2, *shape)
    with torch.no_grad():
        if not torch.allclose(reloaded(x), model(x), atol=1e-5):
            raise EdgecamError("the pruned checkpoint does not reproduce the pruned model", path=path)


def prune_sweep(checkpoint: str | Path, out: str | Path, ratios: Sequence[float], pcfg: PruneConfig) -> dict[str, Any]:
    """One pruned run per ratio in RUN_DIR/ratio_<r>/, then RUN_DIR/accuracy_vs_gflops.png and prune_report.json."""
    if not ratios:
        raise EdgecamError("--ratios needs at least one ratio", fix="e.g. --ratios 0.25,0.5,0.7")
    for r in ratios:
        check_prune_args(r, None)
    out = Path(out)
    runs: list[dict[str, Any]] = []
    for r in ratios:
        runs.append(prune_checkpoint(checkpoint, out / f"ratio_{r:g}", replace(pcfg, ratio=r, target_gflops=None)))
        if runs[0]["metric"] is None:
            raise EdgecamError("the sweep plots accuracy against GFLOPs: it needs validation data", fix="pass --data")
    metric = runs[0]["metric"]
    points = [{"ratio": 0.0, **runs[0]["before"]}] + [{"ratio": r["pruning"]["ratio"], **r["after"]} for r in runs]
    plot = plot_metric_vs_gflops(points, metric, out / "accuracy_vs_gflops.png")
    report = {"checkpoint": str(checkpoint), "metric": metric, "points": points, "runs": runs, "plot": str(plot)}
    (out / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
