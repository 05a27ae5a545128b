import csv
import json

import pytest
import torch

from edgecam.runtime.errors import EdgecamError
from edgecam.train.checkpoint import load_checkpoint
from edgecam.train.config import load_config
from edgecam.train.trainer import train_classifier


def quick(data, out, **kw):
    base = dict(data=str(data), out=str(out), model="test_tiny", imgsz=32, epochs=2, batch=16, progress=False)
    return load_config(None, {**base, **kw})


def test_run_folder_holds_checkpoints_csv_plots(tiny_checkpoint):
    run = tiny_checkpoint.parent
    for name in (
        "best.pt",
        "last.pt",
        "metrics.csv",
        "curves.png",
        "confusion_matrix.png",
        "results.json",
        "config.yaml",
    ):
        assert (run / name).is_file(), name
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    results = json.loads((run / "results.json").read_text())
    assert len(rows) == results["epochs_run"]
    assert {"epoch", "train_loss", "val_acc", "lr"} <= set(rows[0])
    best_row = max(rows, key=lambda r: float(r["val_acc"]))
    assert float(best_row["val_acc"]) == pytest.approx(results["best_metrics"]["top1"], abs=1e-5)


def test_checkpoint_rebuilds_the_model_with_weights_only(tiny_checkpoint, color_data):
    raw = torch.load(tiny_checkpoint, weights_only=True)
    assert raw["class_names"] == ["blue", "green", "red"]
    assert raw["preprocess"]["height"] == 32
    model, meta = load_checkpoint(tiny_checkpoint)
    assert not model.training
    assert meta["model"]["name"] == "test_tiny"
    assert meta["metrics"]["top1"] >= 0.9, "the colour task is easy; the tiny model must learn it"


def test_training_is_reproducible(color_data, tmp_path):
    a = train_classifier(quick(color_data, tmp_path / "a"))
    b = train_classifier(quick(color_data, tmp_path / "b"))
    sa = torch.load(a.last, weights_only=True)["state_dict"]
    sb = torch.load(b.last, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_early_stopping_stops(color_data, tmp_path):
    # lr so small nothing improves after the first epoch: patience 1 must stop at epoch 2
    result = train_classifier(quick(color_data, tmp_path, epochs=10, lr=1e-9, patience=1))
    assert result.stopped_early and result.epochs_run < 10


@pytest.mark.parametrize(
    "switches",
    [
        {"optimizer": "sgd", "scheduler": "onecycle"},
        {"l1": 1e-5, "input_noise": 0.1, "hidden_noise": 0.1, "pooling": "max", "batchnorm": False},
    ],
)
def test_regularisers_and_optimisers_train(color_data, tmp_path, switches):
    result = train_classifier(quick(color_data, tmp_path, **switches))
    assert result.epochs_run == 2
    assert torch.isfinite(torch.tensor(result.history[-1]["train_loss"]))


def test_one_class_dataset_is_an_error(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.png").write_bytes(b"")
    with pytest.raises(EdgecamError, match="at least two"):
        train_classifier(quick(tmp_path, tmp_path / "out"))


@pytest.mark.parametrize(
    ("limit", "elapsed", "epochs", "stop"),
    [
        (None, 1000.0, [10.0], False),  # no limit
        (1.0, 5.0, [], False),  # nothing to extrapolate from yet
        (1.0, 40.0, [20.0, 40.0], False),  # 40 + 20 = 60 s: the next epoch just fits
        (1.0, 41.0, [20.0, 41.0], True),  # 41 + 21 > 60 s
        (10.0, 500.0, [480.0, 500.0], False),  # short last epoch
    ],
)
def test_time_limit_is_never_exceeded(limit, elapsed, epochs, stop, monkeypatch):
    import time as time_mod

    from edgecam.train.trainer import out_of_time

    monkeypatch.setattr(time_mod, "time", lambda: 1000.0 + elapsed)
    history = [{"seconds": s} for s in epochs]
    assert out_of_time(limit, 1000.0, history) == stop


def test_a_checkpoint_from_another_architecture_names_both_versions(tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["edgecam_version"] = "0.1.0"
    ckpt["state_dict"] = {k: v[..., :1] if v.ndim > 1 else v for k, v in ckpt["state_dict"].items()}  # other shapes
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    with pytest.raises(EdgecamError, match="weights do not fit") as info:
        load_checkpoint(old)
    assert "written by edgecam 0.1.0" in str(info.value) and "retrain" in str(info.value)
