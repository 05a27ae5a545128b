"""The detector trainer: same habits as the classifier's (seeded, progress, CSV, plots, early stopping, checkpoints),
with EMA weights, mosaic closed for the last epochs, and COCO mAP as the validation metric."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train import distributed
from edgecam.train.config import TrainConfig
from edgecam.train.detection.augment import DetAugmentConfig
from edgecam.train.detection.data import DetectionDataset, collate_detection
from edgecam.train.detection.datasets import load_detection_data
from edgecam.train.detection.evaluate import plot_pr_curves
from edgecam.train.detection.loss import DetectionLoss
from edgecam.train.detection.samples import DetDataset
from edgecam.train.detection.validate import evaluate_detector, load_val_images
from edgecam.train.ema import ModelEMA
from edgecam.train.loop import EpochEnd, EpochTracker, Resumable, initial_model, save_checkpoints
from edgecam.train.plots import plot_curves
from edgecam.train.registry import model_task
from edgecam.train.trainer import (
    TrainResult,
    build_optimizer,
    build_scheduler,
    finish_run,
    seed_everything,
    to_yaml,
)


def fitness(report: dict[str, Any]) -> float:
    """What early stopping and best.pt follow: mostly mAP@0.5:0.95, a little mAP@0.5 (the YOLO convention)."""
    return 0.1 * (report["map50"] or 0.0) + 0.9 * (report["map50_95"] or 0.0)


def detection_args(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    args: dict[str, Any] = {"num_classes": num_classes}
    if cfg.width is not None:
        args["width"] = cfg.width
    if cfg.act is not None:
        args["act"] = cfg.act
    return args


def det_augment(cfg: TrainConfig) -> DetAugmentConfig:
    """The detector's augmentation: `--no-augment` turns it all off; the flip switch is shared with the classifier."""
    if not cfg.augment.enabled:
        return DetAugmentConfig.off()
    return DetAugmentConfig(mosaic=cfg.mosaic, flip=cfg.augment.flip)


# Workers start fresh rather than fork: a process that has loaded OpenVINO/NNCF threads (export, tests) crashed when
# forked for a DataLoader worker.
WORKER_CONTEXT = "spawn"


def detection_loader(
    det: DetDataset, spec: PreprocessSpec, cfg: TrainConfig, world: distributed.World = distributed.World()
) -> tuple[DetectionDataset, DataLoader]:
    """The augmented, seeded training loader, this rank's share of it under torchrun (shared with pruning's
    fine-tune)."""
    dataset = DetectionDataset(det, spec, det_augment(cfg), cfg.seed)
    loader = DataLoader(
        dataset,
        generator=torch.Generator().manual_seed(cfg.seed),
        collate_fn=collate_detection,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        **distributed.loader_args(dataset, cfg.batch, cfg.seed, world),
        multiprocessing_context=WORKER_CONTEXT if cfg.workers > 0 else None,
    )
    return dataset, loader


def train_detector(cfg: TrainConfig, resume: bool = False) -> TrainResult:
    """Train on a YOLO data.yaml (or COCO JSON); best.pt follows validation mAP; writes CSV, curves, PR plot.

    `resume`: continue the interrupted run in `cfg.out` from its last finished epoch. Under torchrun every rank
    trains its shard (see `edgecam.train.distributed`), rank 0 alone validates and writes, and every rank returns
    rank 0's result.
    """
    with distributed.session() as world:
        return distributed.share(world, _train_detector(cfg, resume, world))


def _train_detector(cfg: TrainConfig, resume: bool, world: distributed.World) -> TrainResult | None:
    cfg = replace(cfg, progress=cfg.progress and world.is_main)
    if not cfg.weights and model_task(cfg.model) != "detect":
        raise EdgecamError(f"model {cfg.model!r} is not a detector", fix="pick a detector, e.g. --model ecdet_s")
    if cfg.imgsz % 32:
        raise EdgecamError(f"--imgsz {cfg.imgsz} must be a multiple of 32 for the detector", fix="use e.g. 320")
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    spec = PreprocessSpec.square(cfg.imgsz, resize="letterbox")
    det_train = load_detection_data(cfg.data, "train")
    det_val = load_detection_data(cfg.data, "val")  # every rank: a bad val split fails them all alike
    classes = det_train.class_names
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_ds, train_dl = detection_loader(det_train, spec, cfg, world)
    val_images = load_val_images(det_val) if world.is_main else []  # rank 0 alone validates

    model, name, args, extra = initial_model(cfg, "detect", classes, detection_args(cfg, len(classes)))
    model = model.to(memory_format=torch.channels_last)  # faster dense convs on CPU (measured: train/trainer.py)
    strides = list(model.strides)
    step_model = distributed.wrap(model, world, cfg.sync_bn)  # DDP under torchrun; `model` is validated and saved
    ema = ModelEMA(model) if cfg.ema else None  # averages `model` (no DDP `module.` prefix); rank 0's is kept
    opt = build_optimizer(model, cfg)
    tracker = EpochTracker(cfg.epochs, cfg.patience, cfg.time_limit)
    sched = build_scheduler(opt, cfg, len(train_dl), tracker)
    criterion = DetectionLoss(len(classes), tuple(strides), cls_weight=cfg.cls_gain, box_weight=cfg.box_gain)
    run = Resumable(model, opt, sched, train_dl.generator, tracker, ema)
    history, best_report, first_epoch, start = run.begin(out, to_yaml(cfg.to_dict()), resume, write=world.is_main)

    def validate(net: torch.nn.Module) -> tuple[dict[str, float], float, dict[str, Any]]:
        @torch.no_grad()
        def predict(batch: np.ndarray) -> np.ndarray:
            return net(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)).numpy()

        report, _ = evaluate_detector(predict, det_val, spec, strides, images=val_images)
        columns = {"map50": report["map50"] or 0.0, "map50_95": report["map50_95"] or 0.0}
        return columns, fitness(report), report

    keep = save_checkpoints(
        out,
        lambda report: {k: report[k] for k in ("map50", "map50_95", "map75", "ap_small", "ap_medium", "ap_large")},
        name=name,
        args=args,
        task="detect",
        class_names=classes,
        spec=spec,
        config=cfg.to_dict(),
        extra={"detect": {"strides": strides}, **extra},
    )

    def line(row: dict[str, float]) -> str:
        return (
            f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f} "
            f"(cls {row['cls_loss']:.3f} box {row['box_loss']:.3f})  "
            f"mAP50 {row['map50']:.4f}  mAP50-95 {row['map50_95']:.4f}"
        )

    end = EpochEnd(
        tracker,
        history,
        start,
        out / "metrics.csv",
        validate=validate,
        keep=keep,
        line=line,
        best=best_report,
        ema=ema,
        resumable=run,
        out=out,
        progress=cfg.progress,
        world=world,
    )
    seen = 0  # images this rank trained on in the last epoch
    for epoch in range(first_epoch, cfg.epochs + 1):
        if cfg.close_mosaic and epoch > tracker.planned - cfg.close_mosaic:
            train_ds.close_mosaic()
        train_ds.set_epoch(epoch)
        distributed.set_epoch(train_dl, epoch)
        model.train()
        totals = {"loss": 0.0, "cls": 0.0, "box": 0.0}
        steps = seen = 0
        bar = tqdm(train_dl, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress)
        for images, targets, _ in bar:
            preds = step_model(images.contiguous(memory_format=torch.channels_last))
            loss, parts = criterion(preds, targets, (spec.height, spec.width))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(model)
            steps += 1
            seen += len(images)
            totals["loss"] += float(loss.detach())
            totals["cls"] += parts["cls"]
            totals["box"] += parts["box"]
            bar.set_postfix(loss=f"{totals['loss'] / steps:.3f}", fg=parts["fg"])
        sums = distributed.sum_over_ranks(world, {**totals, "steps": steps})  # the mean over every rank's steps
        train = {"train_loss": sums["loss"], "cls_loss": sums["cls"], "box_loss": sums["box"]}
        if end(epoch, model, {k: v / max(sums["steps"], 1) for k, v in train.items()}, opt.param_groups[0]["lr"]):
            break
    samples = distributed.gather(world, seen)
    if not world.is_main:
        return None
    best_report = end.best

    plots = [
        plot_curves(
            history,
            out / "curves.png",
            losses={"train_loss": "total", "cls_loss": "cls", "box_loss": "box"},
            metrics={"map50": "mAP@0.5", "map50_95": "mAP@0.5:0.95"},
            metric_title="validation mAP",
            best_epoch=tracker.best_epoch,
        ),
        plot_pr_curves(best_report, out / "pr_curve.png"),
    ]
    best_metrics = {k: v for k, v in best_report.items() if k != "pr_curves"}
    return finish_run(
        out, tracker, best_metrics, history, start, plots, metric="map50", world=world, samples=samples, cfg=cfg
    )
