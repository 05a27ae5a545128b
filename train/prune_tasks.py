"""What fine-tuning a pruned classifier and a pruned detector do differently: data, task loss, distillation loss,
validation and the score that picks the best epoch. The loop that uses them is `edgecam.train.prune_finetune`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.data import DataLoader

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train import distributed
from edgecam.train.config import TrainConfig


def distill_classifier(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened softmaxes, scaled by T^2 so gradients keep their size."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), log_target=True, reduction="batchmean"
    ) * (t * t)


def distill_detector(
    student: torch.Tensor, teacher: torch.Tensor, kind: str = "bce", box_weight: float = 1.0
) -> torch.Tensor:
    """Pull the student's raw predictions (N, A, 4 + C) towards the teacher's, zero when they agree.

    Class logits `[..., 4:]`: BCE against the teacher's sigmoid minus the teacher's own entropy (so, a KL), or MSE on
    the sigmoids. Box log-distances `[..., :4]`: smooth L1, weighted by the teacher's top class score so background
    anchors do not count. Both sums are divided by the teacher's total score, as `DetectionLoss` divides by its
    targets' total: a mean over the whole (N, A, C) grid would be hundreds of times weaker than the task loss.
    """
    t_logits = teacher[..., 4:]
    t = t_logits.sigmoid()
    norm = t.sum().clamp(min=1.0)
    s = student[..., 4:]
    if kind == "mse":
        cls = F.mse_loss(s.sigmoid(), t, reduction="sum")
    else:
        cls = F.binary_cross_entropy_with_logits(s, t, reduction="sum") - F.binary_cross_entropy_with_logits(
            t_logits, t, reduction="sum"
        )
    loss = cls / norm
    if box_weight > 0:
        conf = t.amax(-1)  # N, A
        box = F.smooth_l1_loss(student[..., :4], teacher[..., :4], reduction="none").sum(-1)
        loss = loss + box_weight * (box * conf).sum() / conf.sum().clamp(min=1.0)
    return loss


@dataclass
class TaskParts:
    """What differs between fine-tuning a classifier and a detector; the loop is shared."""

    loader: DataLoader
    start_epoch: Callable[[int, int], None]  # (epoch, planned epochs): augmentation for that epoch
    loss: Callable[[torch.Tensor, Any], torch.Tensor]  # (outputs, batch) -> task loss
    distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (student, teacher outputs) -> loss
    evaluate: Callable[[nn.Module], dict[str, Any]]
    metric: str  # the headline metric of the report
    score: Callable[[dict[str, Any]], float]  # what picks best.pt, as in the task's trainer
    ema: bool
    clip: float | None


def classify_parts(
    cfg: TrainConfig,
    spec: PreprocessSpec,
    classes: tuple[str, ...],
    temperature: float,
    world: distributed.World = distributed.World(),
) -> TaskParts:
    from edgecam.runtime.imagefolder import load_splits
    from edgecam.train.data import ClassificationDataset
    from edgecam.train.trainer import evaluate

    train_split, val_split = load_splits(cfg.data, cfg.val_fraction, cfg.seed)
    if tuple(train_split.classes) != classes:
        raise EdgecamError(f"the data's classes {train_split.classes} differ from the checkpoint's {classes}")
    train_ds = ClassificationDataset(train_split, spec, cfg.augment, cfg.seed, "training images")
    val_ds = ClassificationDataset(val_split, spec, None, cfg.seed, "validation images") if world.is_main else []
    val_dl = DataLoader(val_ds, batch_size=128)  # rank 0 alone validates
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_ds, generator=gen, **distributed.loader_args(train_ds, cfg.batch, cfg.seed, world))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def evaluate_top1(model: nn.Module) -> dict[str, Any]:
        report = evaluate(model, val_dl, nn.CrossEntropyLoss(), classes)
        return {"top1": report["top1"], "val_loss": report["loss"]}

    return TaskParts(
        loader=loader,
        start_epoch=lambda epoch, planned: train_ds.set_epoch(epoch),
        loss=lambda out, batch: criterion(out, batch[1]),
        distill=lambda s, t: distill_classifier(s, t, temperature),
        evaluate=evaluate_top1,
        metric="top1",
        score=lambda m: m["top1"],
        ema=False,
        clip=None,
    )


def detect_parts(
    cfg: TrainConfig,
    spec: PreprocessSpec,
    meta: dict[str, Any],
    distill_loss: str,
    world: distributed.World = distributed.World(),
) -> TaskParts:
    from edgecam.train.detection.datasets import load_detection_data
    from edgecam.train.detection.loss import DetectionLoss
    from edgecam.train.detection.trainer import detection_loader, fitness
    from edgecam.train.detection.validate import evaluate_detector, load_val_images

    strides = list(meta["detect"]["strides"])
    det_train, det_val = load_detection_data(cfg.data, "train"), load_detection_data(cfg.data, "val")
    train_ds, loader = detection_loader(det_train, spec, cfg, world)
    val_images = load_val_images(det_val) if world.is_main else []  # rank 0 alone validates
    criterion = DetectionLoss(
        len(det_train.class_names), tuple(strides), cls_weight=cfg.cls_gain, box_weight=cfg.box_gain
    )

    def start_epoch(epoch: int, planned: int) -> None:
        """Mosaic off for the last `close_mosaic` epochs of the plan, as the trainer does (never back on)."""
        if cfg.close_mosaic and epoch > planned - cfg.close_mosaic:
            train_ds.close_mosaic()
        train_ds.set_epoch(epoch)

    def evaluate_map(model: nn.Module) -> dict[str, Any]:
        model.eval()

        @torch.no_grad()
        def predict(batch: np.ndarray) -> np.ndarray:
            return model(torch.from_numpy(batch)).numpy()

        report, _ = evaluate_detector(predict, det_val, spec, strides, images=val_images)
        return {"map50": report["map50"] or 0.0, "map50_95": report["map50_95"] or 0.0}

    return TaskParts(
        loader=loader,
        start_epoch=start_epoch,
        loss=lambda out, batch: criterion(out, batch[1], (spec.height, spec.width))[0],
        distill=lambda s, t: distill_detector(s, t, distill_loss),
        evaluate=evaluate_map,
        metric="map50",
        score=fitness,
        ema=cfg.ema,
        clip=10.0,
    )
