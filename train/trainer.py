"""The classifier trainer: seeded, with every regulariser a config switch, progress, CSV, plots, checkpoints."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import load_splits
from edgecam.runtime.metrics import classification_report
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train import distributed
from edgecam.train.config import TrainConfig
from edgecam.train.data import ClassificationDataset
from edgecam.train.distributed import World
from edgecam.train.loop import EpochEnd, EpochTracker, Resumable, finish_resume, initial_model, save_checkpoints
from edgecam.train.plots import plot_confusion, plot_curves
from edgecam.train.registry import model_task


@dataclass
class TrainResult:
    best: Path
    last: Path
    best_epoch: int
    best_metrics: dict[str, Any]
    epochs_run: int
    seconds: float
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    stop_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    world_size: int = 1  # processes that trained (torchrun --nproc_per_node)
    distributed: dict[str, Any] | None = None  # under torchrun: backend, per-rank batch, samples per rank

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": str(self.best),
            "last": str(self.last),
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "epochs_run": self.epochs_run,
            "seconds": round(self.seconds, 1),
            "stopped_early": self.stopped_early,
            "stop_reason": self.stop_reason,
            "warnings": self.warnings,
            "plots": [str(p) for p in self.plots],
            "world_size": self.world_size,
            **({"distributed": self.distributed} if self.distributed else {}),
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on BatchNorm and biases: decaying them only hurts."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, tracker: EpochTracker | None = None
) -> Any:
    """Warm-up then cosine over the planned epochs; with a `tracker` the cosine follows its plan as a time limit
    shrinks it. OneCycle keeps the epochs it was given."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        planned = tracker.planned if tracker is not None else cfg.epochs
        return cosine_factor(step, warmup, planned * steps_per_epoch)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def cosine_factor(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine down to 1 % at step `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def l1_penalty(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module, classes: tuple[str, ...]) -> dict[str, Any]:
    model.eval()
    losses, preds, targets = [], [], []
    for x, y in loader:
        logits = model(x)
        losses.append(criterion(logits, y).item() * len(y))
        preds.append(logits.argmax(1).numpy())
        targets.append(y.numpy())
    y_true, y_pred = np.concatenate(targets), np.concatenate(preds)
    report = classification_report(y_true, y_pred, classes)
    report["loss"] = float(sum(losses) / len(y_true))
    return report


def model_args(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    args: dict[str, Any] = {
        "num_classes": num_classes,
        "dropout": cfg.dropout,
        "pooling": cfg.pooling,
        "hidden_noise": cfg.hidden_noise,
        "batchnorm": cfg.batchnorm,
    }
    if cfg.width is not None:
        args["width"] = cfg.width
    if cfg.act is not None:
        args["act"] = cfg.act
    return args


def train_classifier(cfg: TrainConfig, resume: bool = False) -> TrainResult:
    """Train, early-stop on validation top-1, write best.pt/last.pt, metrics.csv, plots and results.json.

    `resume`: continue the interrupted run in `cfg.out` from its last finished epoch. Under torchrun every rank
    trains its shard (see `edgecam.train.distributed`), rank 0 alone writes, and every rank returns rank 0's result.
    """
    with distributed.session() as world:
        return distributed.share(world, _train_classifier(cfg, resume, world))


def _train_classifier(cfg: TrainConfig, resume: bool, world: World) -> TrainResult | None:
    cfg = replace(cfg, progress=cfg.progress and world.is_main)
    if not cfg.weights and model_task(cfg.model) != "classify":
        raise EdgecamError(f"model {cfg.model!r} is not a classifier", fix="pick a model for --task classify")
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    spec = PreprocessSpec.square(cfg.imgsz)
    train_split, val_split = load_splits(cfg.data, cfg.val_fraction, cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    classes = train_split.classes
    train_ds = ClassificationDataset(train_split, spec, cfg.augment, cfg.seed, "training images")
    gen = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(train_ds, generator=gen, **distributed.loader_args(train_ds, cfg.batch, cfg.seed, world))
    val_dl = None  # rank 0 alone validates
    if world.is_main:
        val_ds = ClassificationDataset(val_split, spec, None, cfg.seed, "validation images")
        val_dl = DataLoader(val_ds, batch_size=max(cfg.batch, 128))

    model, name, args, extra = initial_model(cfg, "classify", classes, model_args(cfg, len(classes)))
    # channels_last (NHWC) for the dense default models, because it measured faster on CPU. Timed in one process on
    # 1 thread of a shared 2-core machine, interleaved (noisy): ecdet_s 320px batch 8, a training step
    # 15-18% and eval 14-36% faster than NCHW; ecnet_s 128px batch 32, eval 10-26% faster, a training step -11% to
    # +18% (within the noise). Kept for both trainers and the fine-tune.
    model = model.to(memory_format=torch.channels_last)
    step_model = distributed.wrap(model, world, cfg.sync_bn)  # DDP under torchrun; `model` is validated and saved
    opt = build_optimizer(model, cfg)
    tracker = EpochTracker(cfg.epochs, cfg.patience, cfg.time_limit)
    sched = build_scheduler(opt, cfg, len(train_dl), tracker)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    eval_criterion = nn.CrossEntropyLoss()
    run = Resumable(model, opt, sched, gen, tracker)
    history, best_metrics, first_epoch, start = run.begin(out, to_yaml(cfg.to_dict()), resume, write=world.is_main)

    def validate(net: nn.Module) -> tuple[dict[str, float], float, dict[str, Any]]:
        val = evaluate(net, val_dl, eval_criterion, classes)
        report = {"top1": val["top1"], "val_loss": val["loss"], "per_class": val["per_class"]}
        report["confusion_matrix"] = val["confusion_matrix"]  # for best.pt's plot, not the checkpoint
        return {"val_loss": val["loss"], "val_acc": val["top1"]}, val["top1"], report

    keep = save_checkpoints(
        out,
        lambda report: {k: v for k, v in report.items() if k != "confusion_matrix"},
        name=name,
        args=args,
        task="classify",
        class_names=classes,
        spec=spec,
        config=cfg.to_dict(),
        extra=extra,
    )

    def line(row: dict[str, float]) -> str:
        return (
            f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  train {row['train_acc']:.4f}  "
            f"val {row['val_acc']:.4f}  val_loss {row['val_loss']:.4f}"
        )

    end = EpochEnd(
        tracker,
        history,
        start,
        out / "metrics.csv",
        validate=validate,
        keep=keep,
        line=line,
        best=best_metrics,
        resumable=run,
        out=out,
        progress=cfg.progress,
        world=world,
    )
    seen = 0  # images this rank trained on in the last epoch
    for epoch in range(first_epoch, cfg.epochs + 1):
        train_ds.set_epoch(epoch)
        distributed.set_epoch(train_dl, epoch)
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(train_dl, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress)
        for x, y in bar:
            if cfg.input_noise > 0:
                x = x + torch.randn_like(x) * cfg.input_noise
            logits = step_model(x.contiguous(memory_format=torch.channels_last))
            loss = criterion(logits, y)
            if cfg.l1 > 0:
                loss = loss + cfg.l1 * l1_penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        sums = distributed.sum_over_ranks(world, {"loss": total_loss, "correct": correct, "seen": seen})
        train = {"train_loss": sums["loss"] / sums["seen"], "train_acc": sums["correct"] / sums["seen"]}
        if end(epoch, model, train, opt.param_groups[0]["lr"]):
            break
    samples = distributed.gather(world, seen)
    if not world.is_main:
        return None
    best_metrics = end.best

    plots = [
        plot_curves(history, out / "curves.png", best_epoch=tracker.best_epoch),
        plot_confusion(np.asarray(best_metrics["confusion_matrix"]), classes, out / "confusion_matrix.png"),
    ]
    return finish_run(
        out, tracker, best_metrics, history, start, plots, metric="val_acc", world=world, samples=samples, cfg=cfg
    )


def finish_run(
    out: Path,
    tracker: EpochTracker,
    best_metrics: dict[str, Any],
    history: list[dict[str, float]],
    start: float,
    plots: list[Path],
    metric: str,
    world: World = World(),
    samples: list[int] | None = None,
    cfg: TrainConfig | None = None,
) -> TrainResult:
    """The end of every training run: why it stopped, the result object and its results.json (with the number of
    processes that trained, and under torchrun how they shared the data: `samples` per rank in the last epoch)."""
    finish_resume(out)
    result = TrainResult(
        out / "best.pt",
        out / "last.pt",
        tracker.best_epoch,
        best_metrics,
        len(history),
        time.time() - start,
        bool(tracker.stop),
        history,
        plots,
        stop_reason=tracker.reason(len(history)),
        warnings=tracker.warnings(history, metric),
        world_size=world.size,
    )
    if world.distributed and cfg is not None:
        result.distributed = distributed.summary(world, cfg.batch // world.size, samples or [], cfg.sync_bn)
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def to_yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
