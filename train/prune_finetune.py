"""`edgecam prune`: prune a checkpoint, fine-tune it (optionally distilling from the unpruned model), measure both
and write RUN_DIR/best.pt + prune_report.json; `prune_sweep` does it for several ratios and plots metric vs GFLOPs.

The trainers' loops build their own model and train it from scratch on one schedule, so the fine-tune loop is a
compact one here, built from the trainers' pieces (datasets, optimizer, learning-rate curve, loss, EMA, validation,
CSV): a warm restart at a lower learning rate, distillation, and a time limit that shapes the schedule. What differs
by task is in `edgecam.train.prune_tasks`.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train import distributed
from edgecam.train.checkpoint import load_checkpoint, save_checkpoint
from edgecam.train.config import TrainConfig
from edgecam.train.loop import EpochEnd, EpochTracker
from edgecam.train.prune import (
    PRUNED_KEY,
    channel_widths,
    check_prune_args,
    compare_latency,
    model_stats,
    plot_metric_vs_gflops,
    prune_model,
)
from edgecam.train.prune_tasks import TaskParts, classify_parts, detect_parts
from edgecam.train.trainer import build_optimizer, cosine_factor, l1_penalty, seed_everything

# checkpoint keys `save_checkpoint` writes itself; anything else (e.g. "detect") is carried over as an extra
_CORE_KEYS = {"edgecam_version", "task", "model", "class_names", "preprocess", "epoch", "metrics", "config"}
FINETUNE_LR_SCALE = 0.5  # default fine-tune learning rate: this times the checkpoint's training rate
FINETUNE_WARMUP_EPOCHS = 0.5  # at most this much warm-up: the weights are trained already, the optimizer state not


@dataclass
class PruneConfig:
    """Everything `edgecam prune` takes besides the checkpoint and the run folder."""

    ratio: float | None = None  # fraction of channels to remove
    target_gflops: float | None = None  # or: remove the fewest channels that bring GFLOPs down to this
    global_pruning: bool = False  # rank channels across the network instead of removing `ratio` of each layer
    finetune_epochs: int = 5
    time_limit: float | None = None  # minutes of fine-tuning; fewer epochs when they would not fit
    distill: bool = False  # fine-tune towards the unpruned model's outputs as well as the labels
    distill_weight: float = 1.0
    temperature: float = 4.0  # classifier: softening of both softmaxes
    distill_loss: str = "bce"  # detector: bce (teacher sigmoid as soft target) | mse (on sigmoids)
    lr: float | None = None  # None: FINETUNE_LR_SCALE x the checkpoint's training learning rate
    data: str | None = None  # None: the checkpoint's training data
    latency_runs: int = 50
    onnx_latency: bool = True
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        """Ratio / target are checked by `prune_checkpoint` (a sweep's shared config sets neither)."""
        checks = [
            (self.finetune_epochs >= 0, "--finetune-epochs must be >= 0"),
            (self.time_limit is None or self.time_limit > 0, "--finetune-time-limit must be positive"),
            (self.temperature > 0 and self.distill_weight >= 0, "--temperature > 0 and --distill-weight >= 0"),
            (self.distill_loss in ("bce", "mse"), "--distill-loss must be bce or mse"),
            (self.lr is None or self.lr > 0, "--lr must be positive"),
            (self.latency_runs >= 1, "--latency-runs must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise EdgecamError(f"invalid prune options: {msg}")


@dataclass
class FinetuneResult:
    """What `finetune` did: the kept epoch and its metrics, the final plan, the per-epoch rows, the time taken."""

    best_epoch: int  # 0: no epoch beat the pruned model as it was
    best: dict[str, Any]  # validation metrics of the kept weights
    planned_epochs: int  # the epochs the learning-rate schedule ended up spanning
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def finetune(
    student: nn.Module,
    teacher: nn.Module | None,
    parts: TaskParts,
    cfg: TrainConfig,
    pcfg: PruneConfig,
    csv_path: Path,
    initial: dict[str, Any],
    world: distributed.World = distributed.World(),
) -> FinetuneResult:
    """Fine-tune the pruned model for `cfg.epochs`, or fewer when `pcfg.time_limit` runs out first.

    A warm restart: a short warm-up, then one cosine over the planned epochs. With a time limit the plan shrinks
    after each epoch to the epochs that still fit (each as long as the last one), so the cosine and the closing of
    mosaic finish inside the limit instead of being cut off. The best validation weights are kept, where epoch 0
    (`initial`, the metrics straight after pruning) competes too. Under torchrun each rank fine-tunes on its shard
    of `parts.loader` and rank 0 validates and keeps the best weights (the others' `best` is meaningless).
    """
    from edgecam.train.ema import ModelEMA

    seed_everything(cfg.seed)
    student.to(memory_format=torch.channels_last)  # faster dense convs on CPU, as in the trainers (train/trainer.py)
    result = FinetuneResult(best_epoch=0, best=initial, planned_epochs=cfg.epochs)
    best_state = copy.deepcopy(student.state_dict())
    if pcfg.finetune_epochs < 1:
        return result
    if teacher is not None:
        teacher.eval()  # its BatchNorm layers use their running statistics and never update them
    step_model = distributed.wrap(student, world, cfg.sync_bn)  # DDP under torchrun; `student` is validated, kept
    steps_per_epoch = len(parts.loader)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    # epoch 0 (the weights straight after pruning) competes for best; the plan shrinks with the last epoch's length
    initial_score = parts.score(initial) if world.is_main else -1.0  # the other ranks do not validate
    tracker = EpochTracker(cfg.epochs, time_limit=pcfg.time_limit, pace="last", best_score=initial_score)
    opt = build_optimizer(student, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: cosine_factor(step, warmup, tracker.planned * steps_per_epoch)
    )
    ema = ModelEMA(student) if parts.ema else None

    def validate(net: nn.Module) -> tuple[dict[str, float], float, dict[str, Any]]:
        metrics = parts.evaluate(net)
        return {k: float(v) for k, v in metrics.items()}, parts.score(metrics), metrics

    def keep(epoch: int, net: nn.Module, report: dict[str, Any], improved: bool) -> None:
        nonlocal best_state
        if improved:
            best_state = copy.deepcopy(net.state_dict())

    def line(row: dict[str, float]) -> str:
        return f"fine-tune {row['epoch']:3d}  loss {row['train_loss']:.4f}  {parts.metric} {row[parts.metric]:.4f}"

    end = EpochEnd(
        tracker,
        result.history,
        time.time(),
        csv_path,
        validate=validate,
        keep=keep,
        line=line,
        best=initial,
        ema=ema,
        progress=pcfg.progress and world.is_main,
        world=world,
    )
    for epoch in range(1, cfg.epochs + 1):
        parts.start_epoch(epoch, tracker.planned)
        student.train()
        totals: dict[str, float] = {"loss": 0.0, "distill": 0.0}
        distributed.set_epoch(parts.loader, epoch)
        quiet = not (pcfg.progress and world.is_main)
        bar = tqdm(parts.loader, desc=f"fine-tune {epoch}/{tracker.planned}", leave=False, disable=quiet)
        for steps, batch in enumerate(bar, 1):
            x = batch[0]
            if cfg.input_noise > 0:
                x = x + torch.randn_like(x) * cfg.input_noise
            x = x.contiguous(memory_format=torch.channels_last)
            out = step_model(x)
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
            totals["loss"] += float(loss.detach())
            bar.set_postfix(loss=f"{totals['loss'] / steps:.3f}")
        sums = distributed.sum_over_ranks(world, totals)  # the mean over every rank's steps
        train = {"train_loss": sums["loss"], "distill_loss": sums["distill"]}
        per_step = {k: v / max(steps_per_epoch * world.size, 1) for k, v in train.items()}
        if end(epoch, student, per_step, opt.param_groups[0]["lr"]):
            break
    result.best_epoch, result.best, result.planned_epochs = tracker.best_epoch, end.best, tracker.planned
    result.seconds = time.time() - end.start
    student.load_state_dict(best_state)
    return result


def _train_config(meta: dict[str, Any], pcfg: PruneConfig, out: Path) -> TrainConfig:
    """The checkpoint's own training settings, with the fine-tune's epochs, learning rate, short warm-up, run folder
    and overrides."""
    cfg = TrainConfig.from_dict(dict(meta.get("config") or {"task": meta["task"]}))
    epochs = max(1, pcfg.finetune_epochs)
    changes: dict[str, Any] = {"epochs": epochs, "out": str(out), "progress": pcfg.progress}
    changes["warmup_epochs"] = min(cfg.warmup_epochs, FINETUNE_WARMUP_EPOCHS, epochs / 2)
    changes["lr"] = pcfg.lr or cfg.lr * FINETUNE_LR_SCALE
    changes["time_limit"] = pcfg.time_limit
    if pcfg.data:
        changes["data"] = pcfg.data
    if pcfg.threads:
        changes["threads"] = pcfg.threads
    return replace(cfg, **changes)


def prune_checkpoint(checkpoint: str | Path, out: str | Path, pcfg: PruneConfig) -> dict[str, Any]:
    """Prune + fine-tune + measure; writes RUN_DIR/best.pt (a checkpoint `load_checkpoint` rebuilds) and
    RUN_DIR/prune_report.json, and returns the report.

    Under torchrun every rank prunes the same way and fine-tunes its shard; rank 0 alone measures and writes, and
    every rank returns its report."""
    with distributed.session() as world:
        return distributed.share(world, _prune_checkpoint(checkpoint, out, pcfg, world))


def _prune_checkpoint(
    checkpoint: str | Path, out: str | Path, pcfg: PruneConfig, world: distributed.World
) -> dict[str, Any] | None:
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
        report = _prune_and_measure(teacher, meta, cfg, pcfg, out, has_data, world)
    finally:
        torch.set_num_threads(threads)  # a library call must not leave the process's thread count changed
    if report is None:
        return None
    report = {"checkpoint": str(checkpoint), **report}
    (out / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _prune_and_measure(
    teacher: nn.Module,
    meta: dict[str, Any],
    cfg: TrainConfig,
    pcfg: PruneConfig,
    out: Path,
    has_data: bool,
    world: distributed.World,
) -> dict[str, Any] | None:
    """The report on rank 0; None on the other ranks, which only fine-tune."""
    spec: PreprocessSpec = meta["preprocess_spec"]
    shape = spec.input_shape
    student = copy.deepcopy(teacher)
    record = prune_model(
        student, shape, ratio=pcfg.ratio, target_gflops=pcfg.target_gflops, global_pruning=pcfg.global_pruning
    )
    previous = meta.get(PRUNED_KEY)
    if previous:  # pruning a pruned checkpoint: replaying both histories in order rebuilds it
        record = {**record, "history": previous["history"] + record["history"], "base": previous["base"]}

    parts: TaskParts | None = None
    if has_data and meta["task"] == "classify":
        parts = classify_parts(cfg, spec, tuple(meta["class_names"]), pcfg.temperature, world)
    elif has_data:
        parts = detect_parts(cfg, spec, meta, pcfg.distill_loss, world)
    before_metrics = parts.evaluate(teacher) if parts and world.is_main else {}
    pruned_only = parts.evaluate(student) if parts and world.is_main else {}
    tuned = FinetuneResult(best_epoch=0, best=dict(pruned_only), planned_epochs=0)
    if parts:
        distill_from = teacher if pcfg.distill else None
        tuned = finetune(student, distill_from, parts, cfg, pcfg, out / "metrics.csv", pruned_only, world)
    if not world.is_main:
        return None
    best_epoch, after_metrics = tuned.best_epoch, tuned.best
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
            "epochs_run": len(tuned.history),
            "planned_epochs": tuned.planned_epochs if tuned.history else 0,
            "time_limit": pcfg.time_limit,
            "stopped_for_time": len(tuned.history) < pcfg.finetune_epochs and parts is not None,
            "seconds": round(tuned.seconds, 1),
            "best_epoch": best_epoch,
            "distill": pcfg.distill,
            "distill_weight": pcfg.distill_weight,
            "distill_loss": pcfg.distill_loss if meta["task"] == "detect" else f"kl (T={pcfg.temperature:g})",
            "lr": cfg.lr,
            "data": cfg.data if has_data else None,
            "world_size": world.size,  # processes that fine-tuned (torchrun --nproc_per_node)
        },
        "metric": parts.metric if parts else None,
        "before": before,
        "after": after,
        "pruned_before_finetune": pruned_only,
        "gflops_reduction": round(1 - after["gflops"] / before["gflops"], 4),
        "speedup": {k[: -len("_ms")]: round(before[k] / after[k], 3) for k in before if k.endswith("_ms")},
        "channels": {n: [w, widths_after[n]] for n, w in widths_before.items()},
        "history": tuned.history,
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
    with distributed.session() as world:  # one process group for all the runs
        for r in ratios:
            pruned = prune_checkpoint(checkpoint, out / f"ratio_{r:g}", replace(pcfg, ratio=r, target_gflops=None))
            runs.append(pruned)
            if runs[0]["metric"] is None:
                raise EdgecamError(
                    "the sweep plots accuracy against GFLOPs: it needs validation data", fix="pass --data"
                )
        metric = runs[0]["metric"]
        points = [{"ratio": 0.0, **runs[0]["before"]}] + [{"ratio": r["pruning"]["ratio"], **r["after"]} for r in runs]
        plot = out / "accuracy_vs_gflops.png"
        if world.is_main:
            plot_metric_vs_gflops(points, metric, plot)
        report = {"checkpoint": str(checkpoint), "metric": metric, "points": points, "runs": runs, "plot": str(plot)}
        if world.is_main:
            (out / "prune_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
