"""`edgecam train` under torchrun with two CPU processes on loopback (gloo): the real CLI, as users start it.

Each launch costs a few seconds of process start-up and trains a tiny model on a tiny set. The ranks write which
sample indices their sampler drew per epoch to EDGECAM_DIST_TRACE, so the sharding is checked from what they did.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgecam.runtime.errors import EdgecamError
from edgecam.train.config import load_config
from edgecam.train.distributed import TRACE_ENV, World, check_batch, launched_world, session, wrap
from edgecam.train.trainer import train_classifier

LAUNCH_TIMEOUT = 120  # seconds; a hang (a rank left waiting for another) fails the test instead of the suite


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(trace: Path) -> dict[str, str]:
    # a short collective timeout: a rank left waiting would fail within a minute, not the default half hour
    return {**os.environ, TRACE_ENV: str(trace), "EDGECAM_DIST_TIMEOUT": "60", "OMP_NUM_THREADS": "1"}


def torchrun(args: list[str], trace: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(free_port()), "-m", "edgecam", *args]
    return subprocess.run(cmd, env=_env(trace), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)


def shards(trace: Path, epoch: int) -> list[list[int]]:
    return [json.loads((trace / f"rank{r}_epoch{epoch}.json").read_text()) for r in (0, 1)]


def assert_partition(parts: list[list[int]], n: int) -> None:
    """Equal shards that cover the set; only the padding to an even total may repeat an index."""
    a, b = parts
    assert len(a) == len(b) == (n + 1) // 2
    assert set(a) | set(b) == set(range(n))
    assert len(set(a) & set(b)) == len(a) + len(b) - n


# no BatchNorm (statistics per rank) and no dropout (masks per rank): what a single process would compute
SETTINGS = dict(model="test_tiny", imgsz=32, epochs=8, batch=24, lr=0.05, patience=1, dropout=0.0, seed=0)
CLASSIFIER = [*(a for k, v in SETTINGS.items() for a in (f"--{k}", str(v))), "--no-batchnorm"]


def _single(data: Path, out: Path, batch: int):
    cfg = {**SETTINGS, "batch": batch, "batchnorm": False, "progress": False, "data": str(data), "out": str(out)}
    return train_classifier(load_config(None, cfg))


def test_two_ranks_train_as_one_process_with_the_same_global_batch(color_data, tmp_path):
    """DDP averages the two ranks' mean gradients over 12 images each: the mean gradient over the same 24 images a
    single process takes at that step (`ShardSampler`), so without BatchNorm (per-rank statistics) and dropout
    (per-rank masks) the weights agree up to float summation order. Measured: 3e-6 after the run (AdamW, 5 steps
    an epoch); the tolerance 1e-4 is 30x that, while reading --batch as per-rank (48 images a step) moves them by
    far more. The same validation scores make rank 0's early stop fall on the same epoch, and both ranks end there.
    """
    out, trace = tmp_path / "ddp", tmp_path / "trace"
    run = torchrun(["train", "--data", str(color_data), "--out", str(out), *CLASSIFIER], trace)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("best val top-1") == 1, "rank 1 prints nothing"
    assert "rank 1" not in run.stderr

    result = json.loads((out / "results.json").read_text())
    assert result["world_size"] == 2
    assert result["distributed"]["per_rank_batch"] == 12 and result["distributed"]["samples_per_rank"] == [60, 60]
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + result["epochs_run"], "one writer: a second rank would have appended its rows"
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "last.pt"]

    n = 120  # training images (the corrupt file is skipped)
    for epoch in range(1, result["epochs_run"] + 1):
        assert_partition(shards(trace, epoch), n)
    assert shards(trace, 1) != shards(trace, 2), "set_epoch reshuffles"

    # early stopping, decided on rank 0, ended both ranks at the same epoch
    assert result["stopped_early"] and result["epochs_run"] < 8
    assert sorted(p.name for p in trace.glob(f"rank*_epoch{result['epochs_run'] + 1}.json")) == []

    single = _single(color_data, tmp_path / "one", batch=24)
    assert json.loads((tmp_path / "one" / "results.json").read_text())["world_size"] == 1
    assert single.epochs_run == result["epochs_run"]
    assert [h["val_acc"] for h in single.history] == pytest.approx([h["val_acc"] for h in _history(out)], abs=1e-6)
    a = torch.load(out / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(single.last, weights_only=True)["state_dict"]
    assert _max_diff(a, b) < 1e-4

    per_rank = _single(color_data, tmp_path / "per-rank", batch=48)
    c = torch.load(per_rank.last, weights_only=True)["state_dict"]
    assert _max_diff(a, c) > 1e-2, "the tolerance tells the two batch meanings apart"


def _history(out: Path) -> list[dict[str, float]]:
    import csv

    with open(out / "metrics.csv") as fh:
        return [{"val_acc": float(r["val_acc"])} for r in csv.DictReader(fh)]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def det_data(tmp_path_factory):
    from edgecam.train.synth import synth_detection

    root = tmp_path_factory.mktemp("det")
    synth_detection("security", root / "data", 10, seed=3, imgsz=(256, 192))
    return root / "data" / "data.yaml"


def test_detector_under_two_ranks_stops_on_rank_0s_time_limit(det_data, tmp_path):
    """The time limit (30 ms) runs out on rank 0 during epoch 1; both ranks stop after it and the run ends."""
    out, trace = tmp_path / "det", tmp_path / "trace"
    args = ["train", "--task", "detect", "--data", str(det_data), "--out", str(out), "--model", "test_det_tiny"]
    args += ["--imgsz", "64", "--epochs", "4", "--batch", "4", "--time-limit", "0.0005", "--json"]
    run = torchrun(args, trace)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert result["world_size"] == 2 and result["stop_reason"].startswith("time limit: 1 of 4 epochs")
    assert json.loads(run.stdout)["world_size"] == 2, "one JSON document: rank 1 prints nothing"
    epoch1 = shards(trace, 1)
    assert_partition(epoch1, len(set(epoch1[0]) | set(epoch1[1])))
    assert not list(trace.glob("rank*_epoch2.json")), "no rank began epoch 2"
    assert (out / "best.pt").is_file() and (out / "pr_curve.png").is_file()


def test_a_failed_rank_ends_the_other_without_torchrun(color_data, tmp_path):
    """Launched by hand (no torchrun agent to kill the survivor): rank 0 fails writing last.pt at the end of epoch
    1, tells rank 1, and both exit with one error line each: rank 1 does not wait out the 60 s collective timeout."""
    out, trace = tmp_path / "run", tmp_path / "trace"
    (out / "last.pt" / "blocker").mkdir(parents=True)  # a directory where rank 0 must write a file
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = {**_env(trace), "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cmd = [sys.executable, "-m", "edgecam", "train", "--data", str(color_data), "--out", str(out), *CLASSIFIER]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results, ended = [], []
        for p in procs:
            results.append(p.communicate(timeout=LAUNCH_TIMEOUT))
            ended.append(time.monotonic())
    finally:
        for p in procs:
            p.kill()
    assert ended[1] - ended[0] < 30, "rank 1 outlived rank 0 by half the collective timeout: it was left waiting"
    (_, err0), (_, err1) = results
    assert procs[0].returncode == 1 and "IsADirectoryError" in err0
    assert procs[1].returncode == 2
    assert err1.strip() == "edgecam train (rank 1): error: rank 0 failed at the end of epoch 1: its error says why"


def test_batch_is_global_and_must_split_evenly():
    assert check_batch(24, World(0, 2, 0, "gloo")) == 12
    assert check_batch(24, World()) == 24
    with pytest.raises(EdgecamError, match="--batch 15 is the global batch"):
        check_batch(15, World(1, 2, 1, "gloo"))


def test_sync_bn_on_cpu_ranks_is_refused_and_a_single_process_ignores_it():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(EdgecamError, match="--sync-bn needs GPUs"):
        wrap(model, World(0, 2, 0, "gloo"), sync_bn=True)
    assert wrap(model, World(), sync_bn=True) is model


def test_a_rank_whose_peers_never_come_gives_up_after_the_timeout(monkeypatch):
    env = {"EDGECAM_DIST_TIMEOUT": "1", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    with pytest.raises(EdgecamError, match="rank 0 could not join the 2 training processes within 1 s"), session():
        pytest.fail("joined a group nobody else started")
    assert time.monotonic() - started < 20
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),  # a plain process
        ({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}, None),  # torchrun, 1 proc
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, None),  # no MASTER_ADDR: not a torchrun launch
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1"}, World(1, 2, 1)),
    ],
)
def test_only_a_multi_process_launch_joins_a_group(monkeypatch, env, expected):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launched_world() == expected
    if expected is None:
        with session() as world:
            assert world == World() and not torch.distributed.is_initialized()
