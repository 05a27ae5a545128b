"""What the three training loops (classifier, detector, pruning's fine-tune) share around their epochs: the end of
an epoch (`EpochEnd`), the best epoch, why training stopped (and whether the model is undertrained), and the state
saved after every epoch so `edgecam train --resume RUN_DIR` continues a run."""

from __future__ import annotations

import contextlib
import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.sinks.jsonl import to_jsonable
from edgecam.train.distributed import ABORT, CONTINUE, STOP, World, broadcast_decision

RESUME_FILE = "resume.pt"
RISING = 0.02  # a metric that gained this much over the last epochs was still learning


@dataclass
class EpochTracker:
    """Best score, epochs without improvement, the epochs planned, and the reason the loop ended ("" while it runs).

    With a time limit the plan shrinks after each epoch to the epochs that still fit (each as long as the mean epoch
    so far, or the last one with `pace="last"`), and the learning-rate schedule follows `planned`: the cosine and
    the closing of mosaic finish inside the limit instead of being cut off at a high learning rate.
    """

    planned: int
    patience: int = 0
    time_limit: float | None = None  # minutes
    pace: str = "mean"  # how long a future epoch is taken to be: "mean" of those so far | "last" one
    best_score: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    stop: str = ""  # "" | "patience" | "time"

    def __post_init__(self) -> None:
        self.requested = self.planned

    def update(self, epoch: int, score: float) -> bool:
        """Record an epoch's validation score; True when it is the best so far."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        return False

    def replan(self, start: float, history: list[dict[str, float]]) -> None:
        """Shrink the plan to the epochs that fit in the time limit; never grow it."""
        if not self.time_limit or not history:
            return
        if self.pace == "last":
            self.planned = min(self.planned, epochs_that_fit(self.time_limit, history))
            return
        mean_epoch = history[-1]["seconds"] / len(history)
        left = self.time_limit * 60 - (time.time() - start)
        self.planned = min(self.planned, len(history) + max(0, int(left // max(mean_epoch, 1e-9))))

    def should_stop(self, start: float, history: list[dict[str, float]]) -> bool:
        """Early stopping first, then the time limit: no epoch starts that would end past it."""
        self.replan(start, history)
        if self.patience and self.stale >= self.patience:
            self.stop = "patience"
        elif history and len(history) >= self.planned and self.planned < self.requested:
            self.stop = "time"
        return bool(self.stop)

    def reason(self, epochs_run: int) -> str:
        """One line saying why training ended."""
        if self.stop == "patience":
            return f"early stop: no improvement for {self.patience} epochs, best epoch {self.best_epoch}"
        if self.stop == "time":
            short = " - the model is undertrained" if epochs_run < self.requested / 2 else ""
            return f"time limit: {epochs_run} of {self.requested} epochs done{short}"
        return f"completed {epochs_run} epochs, best epoch {self.best_epoch}"

    def warnings(self, history: list[dict[str, float]], metric: str) -> list[str]:
        """Say when a run cut short by the time limit ended far from converged."""
        if self.stop != "time" or not history:
            return []
        values = [h[metric] for h in history]
        recent = values[-4:]
        rising = self.best_epoch == len(values) and recent[-1] - recent[0] >= RISING
        if len(values) >= self.requested / 2 and not rising:
            return []
        why = f"{metric} still rising at the last epoch" if rising else f"only {len(values)} of {self.requested} epochs"
        return [f"the model is undertrained ({why}): raise --time-limit for a better model"]


def epochs_that_fit(limit_minutes: float | None, history: list[dict[str, float]]) -> int:
    """How many epochs the run can have in all: those done plus as many more, each as long as the last, as end
    inside the limit (`history[i]["seconds"]` is the time since the start at the end of epoch i + 1)."""
    if not limit_minutes or not history:
        return 2**31
    elapsed = history[-1]["seconds"]
    last = elapsed - (history[-2]["seconds"] if len(history) > 1 else 0.0)
    return len(history) + max(0, int((limit_minutes * 60 - elapsed) // max(last, 1e-9)))


@dataclass
class Resumable:
    """The objects of a run that `resume.pt` is taken from after every epoch and put back into on `--resume`."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    tracker: EpochTracker
    ema: Any = None

    def save(self, out: Path, epoch: int, history: list[dict[str, float]], best_metrics: dict[str, Any]) -> None:
        """Everything an interrupted run needs to go on as if it had not stopped; written atomically."""
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout and noise draw from it
            "tracker": asdict(self.tracker),
            "history": json.dumps(history),
            "best_metrics": json.dumps(to_jsonable(best_metrics)),
            "ema": None if self.ema is None else {"state": self.ema.ema.state_dict(), "updates": self.ema.updates},
        }
        tmp = out / (RESUME_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(out / RESUME_FILE)

    def restore(self, state: dict[str, Any]) -> None:
        """Put the saved state back into the freshly built objects (the tracker keeps the run's planned epochs)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        for key in ("best_score", "best_epoch", "stale", "planned"):
            setattr(self.tracker, key, state["tracker"][key])
        if self.ema is not None and state.get("ema"):
            self.ema.ema.load_state_dict(state["ema"]["state"])
            self.ema.updates = state["ema"]["updates"]

    def begin(
        self, out: Path, config_yaml: str, resume: bool, write: bool = True
    ) -> tuple[list[dict[str, float]], dict[str, Any], int, float]:
        """A new run writes its config.yaml (`write`: rank 0 only under torchrun); a resumed one restores its state
        instead (every rank reads the same resume.pt).

        Returns (history, best metrics so far, the first epoch to run, the start time that continues elapsed time).
        """
        if not resume:
            if write:
                (out / "config.yaml").write_text(config_yaml)
            return [], {}, 1, time.time()
        state = load_resume_state(out)
        self.restore(state)
        history = state["history"]
        return history, state["best_metrics"], state["epoch"] + 1, time.time() - history[-1]["seconds"]


@dataclass
class EpochEnd:
    """The end of every epoch, in one order for the classifier, the detector and pruning's fine-tune.

    Validate the weights that would be kept (the EMA copy where there is one), add the row to the history and
    metrics.csv, follow the best score, keep the weights (`keep`: checkpoints, or a copy in memory), save the resume
    state, print the progress line, and say whether to stop (patience, time limit). The loops differ only in the
    callables: what validation measures, how the kept weights are stored, what the progress line shows.
    """

    tracker: EpochTracker
    history: list[dict[str, float]]
    start: float  # time.time() at the start of the run (shifted back by the time already spent, on resume)
    csv_path: Path
    # evaluated model -> (the row's validation columns, the score the best epoch follows, the full report)
    validate: Callable[[torch.nn.Module], tuple[dict[str, float], float, Any]]
    keep: Callable[[int, torch.nn.Module, Any, bool], None]  # (epoch, evaluated model, report, improved)
    line: Callable[[dict[str, float]], str]  # the progress line of a row (" *" is added on a new best)
    best: Any = None  # the report of the best epoch so far
    ema: Any = None  # a ModelEMA: validate and keep its averaged weights
    resumable: Resumable | None = None  # with `out`: resume.pt written after every epoch
    out: Path | None = None
    progress: bool = True
    world: World = World()  # under torchrun: rank 0 does all of the above, the others follow its decision

    def __call__(self, epoch: int, model: torch.nn.Module, train: dict[str, float], lr: float) -> bool:
        """Close epoch `epoch` given its training columns and learning rate; True when the loop should stop.

        Under torchrun every rank calls this; rank 0 closes the epoch and broadcasts whether to stop (and the plan
        the schedule follows), so all ranks leave the loop together, also when rank 0 fails here.
        """
        if not self.world.is_main:
            decision, self.tracker.planned = broadcast_decision(self.world, CONTINUE, self.tracker.planned)
            if decision == ABORT:
                raise EdgecamError(f"rank 0 failed at the end of epoch {epoch}: its error says why")
            return decision == STOP
        try:
            stop = self._close(epoch, model, train, lr)
        except BaseException:
            if self.world.distributed:
                with contextlib.suppress(Exception):  # the group may be what failed; the original error matters more
                    broadcast_decision(self.world, ABORT, self.tracker.planned)
            raise
        broadcast_decision(self.world, STOP if stop else CONTINUE, self.tracker.planned)
        return stop

    def _close(self, epoch: int, model: torch.nn.Module, train: dict[str, float], lr: float) -> bool:
        evaluated = (self.ema.ema if self.ema is not None else model).eval()
        columns, score, report = self.validate(evaluated)
        row = {"epoch": epoch, **train, **columns, "lr": lr, "seconds": time.time() - self.start}
        self.history.append(row)
        append_csv(self.csv_path, row, first=epoch == 1)
        improved = self.tracker.update(epoch, score)
        if improved:
            self.best = report
        self.keep(epoch, evaluated, report, improved)
        if self.resumable is not None and self.out is not None:
            self.resumable.save(self.out, epoch, self.history, self.best)
        if self.progress:
            tqdm.write(self.line(row) + (" *" if improved else ""))
        return self.tracker.should_stop(self.start, self.history)


def save_checkpoints(
    out: Path, metrics_of: Callable[[Any], dict[str, Any]], **common: Any
) -> Callable[[int, torch.nn.Module, Any, bool], None]:
    """The trainers' `EpochEnd.keep`: last.pt every epoch, best.pt on a new best, both with `metrics_of(report)`."""
    from edgecam.train.checkpoint import save_checkpoint

    def keep(epoch: int, net: torch.nn.Module, report: Any, improved: bool) -> None:
        metrics = metrics_of(report)
        save_checkpoint(out / "last.pt", net, epoch=epoch, metrics=metrics, **common)
        if improved:
            save_checkpoint(out / "best.pt", net, epoch=epoch, metrics=metrics, **common)

    return keep


def append_csv(path: Path, row: dict[str, float], first: bool) -> None:
    """One row of metrics.csv; the first epoch writes the header (and starts the file afresh)."""
    with open(path, "w" if first else "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if first:
            writer.writeheader()
        writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})


def load_resume_state(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RESUME_FILE
    if not path.is_file():
        raise EdgecamError(
            "nothing to resume: no resume.pt", path=run_dir, fix="give the folder of a run that was interrupted"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle/zip errors of many types for bad files
        raise EdgecamError(
            f"resume state unreadable ({type(exc).__name__})", path=path, fix="start a new run"
        ) from None
    state["history"] = json.loads(state["history"])
    state["best_metrics"] = json.loads(state["best_metrics"])
    return state


def finish_resume(out: Path) -> None:
    """A run that ended on its own (its schedule annealed, even under a time limit) has nothing to resume."""
    (out / RESUME_FILE).unlink(missing_ok=True)


def initial_model(
    cfg: Any, task: str, class_names: tuple[str, ...], args: dict[str, Any]
) -> tuple[torch.nn.Module, str, dict[str, Any], dict[str, Any]]:
    """The model a run starts from: `cfg.weights` (an earlier checkpoint) or a new `cfg.model` built with `args`.

    Returns (model, registered name, model args, extra checkpoint keys such as a pruning record).
    """
    from edgecam.train.checkpoint import model_from_weights
    from edgecam.train.registry import create_model

    if not cfg.weights:
        return create_model(cfg.model, **args), cfg.model, args, {}
    model, name, args, pruned, note = model_from_weights(cfg.weights, task, class_names)
    if cfg.progress:
        print(note, flush=True)
    return model, name, args, ({"pruned": pruned} if pruned else {})
