"""Data-parallel training under `torchrun`: what the classifier, detector and pruning's fine-tune share.

`torchrun --nproc_per_node N -m edgecam train ...` starts N copies of the command with WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT set. `session()` joins them into one process group and always leaves it again,
exceptions included. The backend follows the device the model trains on: nccl for CUDA, gloo for CPU; edgecam's
trainers train on CPU, so they use gloo also on a machine with GPUs. Without that environment, or with WORLD_SIZE 1,
nothing is initialised and training is the plain single process.

The rules the trainers follow:
- `--batch` is the global batch: each of the N ranks takes batch / N images per step, and DDP averages the
  gradients, so one optimizer step sees the same images and the same mean gradient as a single process with the same
  `--batch` and `--lr` (the shuffle is keyed on (seed, epoch) in both, see `ShardSampler`).
- rank 0 alone validates, logs, plots and writes files; at the end of every epoch it broadcasts whether to go on
  (`broadcast_decision`), so early stopping, the time limit and a failure there end every rank at the same epoch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from edgecam.runtime.errors import EdgecamError

TIMEOUT_ENV = "EDGECAM_DIST_TIMEOUT"  # seconds to join the group, and the longest a rank waits in a collective
DEFAULT_TIMEOUT = 1800.0  # rank 0 validates alone while the others wait: room for a large validation set
TRACE_ENV = "EDGECAM_DIST_TRACE"  # a folder: each rank writes the sample indices it drew per epoch (for checks)
_REQUIRED = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")

CONTINUE, STOP, ABORT = 0, 1, 2  # what rank 0 tells the others at the end of an epoch


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank 0 of 1 for a plain single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world() -> World | None:
    """The world torchrun describes in the environment, or None when this is not a multi-process launch."""
    if any(k not in os.environ for k in _REQUIRED):
        return None
    try:
        size, rank, local = (int(os.environ[k]) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
    except ValueError:
        raise EdgecamError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers", fix="start the run with torchrun"
        ) from None
    if size <= 1:
        return None
    return World(rank, size, local)


def current() -> World:
    """The world of an initialised process group, else the single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())
    return World()


def timeout_seconds() -> float:
    try:
        value = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        raise EdgecamError(f"{TIMEOUT_ENV} must be a number of seconds") from None
    if not value > 0:
        raise EdgecamError(f"{TIMEOUT_ENV} must be positive")
    return value


@contextmanager
def session(device: str = "cpu") -> Iterator[World]:
    """Join torchrun's process group for the duration of a run and always leave it (exceptions too), so a failed
    rank closes its connections and its peers fail instead of waiting. Nested sessions (a prune sweep's runs) share
    the outer group."""
    if dist.is_available() and dist.is_initialized():
        yield current()
        return
    world = launched_world()
    if world is None:
        yield World()
        return
    if not dist.is_available():
        raise EdgecamError("this torch build has no torch.distributed", fix="run without torchrun")
    backend = "nccl" if device == "cuda" else "gloo"
    seconds = timeout_seconds()
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=seconds))
    except Exception as exc:  # torch raises RuntimeError / DistStoreError / DistNetworkError on a failed join
        raise EdgecamError(
            f"rank {world.rank} could not join the {world.size} training processes within {seconds:g} s "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
            fix="start every rank (torchrun --nproc_per_node N ...) and check MASTER_ADDR / MASTER_PORT",
        ) from None
    try:
        yield World(world.rank, world.size, world.local_rank, backend)
    except Exception as exc:
        if not isinstance(exc, EdgecamError) and _peer_lost(exc):
            raise EdgecamError(
                f"rank {world.rank} lost its connection to another training process, which stopped",
                fix="that process's own error line says why",
            ) from None
        raise
    finally:
        dist.destroy_process_group()  # closes this rank's connections: peers waiting on it fail at once


def _peer_lost(exc: BaseException) -> bool:
    """A collective that failed because a peer rank exited (gloo: the connection closed; nccl: the op aborted)."""
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(
        s in text for s in ("closed by peer", "connection reset", "broken pipe")
    )


def check_batch(batch: int, world: World) -> int:
    """The per-rank batch: `batch` is the global batch, split evenly over the ranks."""
    if batch % world.size:
        raise EdgecamError(
            f"--batch {batch} is the global batch and must divide evenly over the {world.size} processes",
            fix=f"use a multiple of {world.size}, e.g. --batch {max(world.size, batch - batch % world.size)}",
        )
    return batch // world.size


class ShardSampler(DistributedSampler):
    """Every rank shuffles the whole set with the same (seed, epoch) permutation and takes every N-th index from
    its rank on, so the N shards of an epoch are disjoint and cover the set (padded to a multiple of N by repeating
    a few indices), and the images of step k over all ranks are those a single process with the global batch takes
    at step k. With N = 1 it is simply the single process's shuffle. Call `set_epoch` before every epoch."""

    def __init__(self, dataset: Dataset, world: World, seed: int):
        super().__init__(dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed)
        self.trace = os.environ.get(TRACE_ENV)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        if self.trace:
            path = Path(self.trace) / f"rank{self.rank}_epoch{self.epoch}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(indices))
        return iter(indices)


def loader_args(dataset: Dataset, batch: int, seed: int, world: World) -> dict[str, Any]:
    """DataLoader arguments for the training set: the rank's share of the global `batch`, its `ShardSampler`, and
    no partial last batch unless the shard is a single batch."""
    per_rank = check_batch(batch, world)
    sampler = ShardSampler(dataset, world, seed)
    return {"batch_size": per_rank, "sampler": sampler, "drop_last": sampler.num_samples > per_rank}


def set_epoch(loader: Any, epoch: int) -> None:
    """Re-key the loader's shuffle for `epoch` (every epoch a different, reproducible order)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def wrap(model: nn.Module, world: World, sync_bn: bool = False) -> nn.Module:
    """The module the training step calls: DistributedDataParallel around `model` (which stays the one to validate,
    save and average into an EMA: its state-dict keys carry no `module.` prefix) or `model` itself."""
    if not world.distributed:
        return model
    if sync_bn:
        if world.backend != "nccl":
            raise EdgecamError(
                "--sync-bn needs GPUs: torch's SyncBatchNorm runs on CUDA only, and these ranks train on CPU",
                fix="drop --sync-bn (each rank then normalises over its own batch / N images)",
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [world.local_rank] if world.backend == "nccl" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _device(world: World) -> torch.device:
    return torch.device("cuda", world.local_rank) if world.backend == "nccl" else torch.device("cpu")


def broadcast_decision(world: World, decision: int, planned: int) -> tuple[int, int]:
    """Rank 0's end-of-epoch decision (CONTINUE / STOP / ABORT) and its planned epochs (the learning-rate schedule
    and the closing of mosaic follow it) to every rank."""
    if not world.distributed:
        return decision, planned
    data = torch.tensor([decision, planned], dtype=torch.int64, device=_device(world))
    dist.broadcast(data, src=0)
    return int(data[0]), int(data[1])


def sum_over_ranks(world: World, values: dict[str, float]) -> dict[str, float]:
    """Each key summed over the ranks (epoch loss totals, correct counts, samples seen)."""
    if not world.distributed:
        return values
    keys = list(values)
    data = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_device(world))
    dist.all_reduce(data)
    return {k: float(v) for k, v in zip(keys, data.tolist(), strict=True)}


def gather(world: World, value: Any) -> list[Any]:
    """`value` from every rank, in rank order (a small picklable object)."""
    if not world.distributed:
        return [value]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def share(world: World, value: Any) -> Any:
    """Rank 0's `value` on every rank (the run's result, so every rank returns the same)."""
    if not world.distributed:
        return value
    box = [value if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def summary(world: World, per_rank_batch: int, samples: list[int], sync_bn: bool) -> dict[str, Any]:
    """What results.json says about the processes that trained."""
    return {
        "backend": world.backend,
        "per_rank_batch": per_rank_batch,
        "samples_per_rank": samples,  # training images each rank drew in the last epoch
        "sync_bn": sync_bn,
    }
