import csv
import json
import shutil

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
    assert result.stop_reason == f"early stop: no improvement for 1 epochs, best epoch {result.best_epoch}"
    assert not (tmp_path / "resume.pt").exists(), "a finished run leaves nothing to resume"


def test_resume_continues_an_interrupted_run_exactly(color_data, tmp_path):
    """Three epochs in one go, or two then `--resume` for the third: the same weights and the same history."""
    whole = train_classifier(quick(color_data, tmp_path / "whole", epochs=3, patience=0, dropout=0.3))
    interrupted = _interrupt_after(color_data, tmp_path / "cut", epochs=3, stop_after=2, dropout=0.3)
    resumed = train_classifier(interrupted, resume=True)
    assert resumed.epochs_run == whole.epochs_run == 3
    a = torch.load(whole.last, weights_only=True)["state_dict"]
    b = torch.load(resumed.last, weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    assert [round(h["val_acc"], 6) for h in whole.history] == [round(h["val_acc"], 6) for h in resumed.history]
    assert not (tmp_path / "cut" / "resume.pt").exists()


def _interrupt_after(data, out, epochs, stop_after, **kw):
    """Run `stop_after` epochs of an `epochs`-epoch plan, then stop as a crash or Ctrl-C would (state kept)."""
    import edgecam.train.trainer as trainer_mod

    cfg = quick(data, out, epochs=epochs, patience=0, **kw)
    calls = {"n": 0}
    real = trainer_mod.EpochTracker.should_stop

    def stop_early(self, start, history):
        calls["n"] += 1
        if calls["n"] >= stop_after:
            raise KeyboardInterrupt
        return real(self, start, history)

    trainer_mod.EpochTracker.should_stop = stop_early
    try:
        with pytest.raises(KeyboardInterrupt):
            train_classifier(cfg)
    finally:
        trainer_mod.EpochTracker.should_stop = real
    assert (out / "resume.pt").is_file()
    return cfg


def test_resume_after_the_last_epoch_only_finishes_the_run(color_data, tmp_path):
    """Interrupted after the last epoch's state was saved (while plotting): --resume trains nothing more and writes
    the results."""
    cfg = _interrupt_after(color_data, tmp_path, epochs=2, stop_after=2, dropout=0.0)
    resumed = train_classifier(cfg, resume=True)
    assert resumed.epochs_run == 2 and resumed.world_size == 1
    assert json.loads((tmp_path / "results.json").read_text())["world_size"] == 1
    assert not (tmp_path / "resume.pt").exists()


def test_resume_needs_a_run_that_stopped(color_data, tmp_path):
    done = train_classifier(quick(color_data, tmp_path, epochs=1))
    with pytest.raises(EdgecamError, match="nothing to resume"):
        train_classifier(quick(color_data, done.best.parent, epochs=1), resume=True)


def test_weights_start_from_a_checkpoint_and_reinitialise_only_new_class_outputs(tiny_checkpoint, tmp_path):
    """Fine-tuning to a new class list: every layer but the class output comes from the checkpoint."""
    from tests.conftest import write_color_dataset

    data = write_color_dataset(tmp_path / "two", 10, seed=5)
    shutil.rmtree(data / "red")  # two classes now instead of three
    source = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    result = train_classifier(quick(data, tmp_path / "run", epochs=1, lr=1e-12, weights=str(tiny_checkpoint)))
    tuned = torch.load(result.last, weights_only=True)
    assert tuned["class_names"] == ["blue", "green"]
    changed = sorted(k for k in source if source[k].shape != tuned["state_dict"][k].shape)
    assert changed == ["classifier.bias", "classifier.weight"]
    same = [k for k in source if k not in changed and k.endswith("weight")]
    assert same and all(torch.allclose(source[k], tuned["state_dict"][k], atol=1e-6) for k in same)


def test_weights_of_the_wrong_task_are_refused(tiny_checkpoint):
    from edgecam.train.checkpoint import model_from_weights

    with pytest.raises(EdgecamError, match="is a classify checkpoint, this run trains a detect model"):
        model_from_weights(tiny_checkpoint, "detect", ("person",))


@pytest.mark.parametrize(
    ("stop", "epochs_run", "planned", "values", "reason", "warned"),
    [
        ("", 5, 5, [0.1, 0.2, 0.3, 0.4, 0.5], "completed 5 epochs, best epoch 5", False),
        ("patience", 4, 30, [0.5, 0.4, 0.4, 0.4], "early stop: no improvement for 3 epochs, best epoch 1", False),
        ("time", 2, 60, [0.1, 0.2], "time limit: 2 of 60 epochs done - the model is undertrained", True),
        ("time", 40, 60, [0.5] * 36 + [0.5, 0.6, 0.7, 0.8], "time limit: 40 of 60 epochs done", True),  # rising
        ("time", 40, 60, [0.8] + [0.7] * 39, "time limit: 40 of 60 epochs done", False),  # converged, then cut
    ],
)
def test_training_says_why_it_stopped(stop, epochs_run, planned, values, reason, warned):
    from edgecam.train.loop import EpochTracker

    tracker = EpochTracker(planned=planned, patience=3)
    for epoch, v in enumerate(values, 1):
        tracker.update(epoch, v)
    tracker.stop = stop
    assert tracker.reason(epochs_run) == reason
    warnings = tracker.warnings([{"map50": v} for v in values], "map50")
    assert bool(warnings) == warned, warnings
    if warned:
        assert "undertrained" in warnings[0]


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
        (10.0, 500.0, [480.0, 500.0], True),  # a short last epoch: the mean epoch (250 s) does not fit in 100 s
    ],
)
def test_time_limit_is_never_exceeded(limit, elapsed, epochs, stop, monkeypatch):
    import time as time_mod

    from edgecam.train.loop import EpochTracker

    monkeypatch.setattr(time_mod, "time", lambda: 1000.0 + elapsed)
    history = [{"seconds": s} for s in epochs]
    tracker = EpochTracker(planned=60, time_limit=limit)
    assert tracker.should_stop(1000.0, history) == stop
    assert tracker.stop == ("time" if stop else "")


def test_a_checkpoint_from_another_architecture_names_both_versions(tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["edgecam_version"] = "0.1.0"
    ckpt["state_dict"] = {k: v[..., :1] if v.ndim > 1 else v for k, v in ckpt["state_dict"].items()}  # other shapes
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    with pytest.raises(EdgecamError, match="weights do not fit") as info:
        load_checkpoint(old)
    assert "written by edgecam 0.1.0" in str(info.value) and "retrain" in str(info.value)


def test_the_cosine_follows_a_plan_that_a_time_limit_shrank():
    """A time limit that cuts 10 planned epochs to 4 still ends the schedule at its floor, not at a high rate."""
    from edgecam.train.loop import EpochTracker
    from edgecam.train.trainer import build_scheduler

    cfg = load_config(None, dict(data="x", epochs=10, warmup_epochs=0, lr=1.0))
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    tracker = EpochTracker(planned=10, time_limit=1.0)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5, tracker=tracker)
    tracker.planned = 4
    for _ in range(4 * 5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01, abs=1e-6)


def test_a_time_limited_run_says_so_and_leaves_nothing_to_resume(color_data, tmp_path, monkeypatch):
    """Every epoch 'takes' 40 s against a 1-minute limit: one epoch fits, and the run says why it stopped."""
    import itertools

    import edgecam.train.loop as loop_mod

    clock = itertools.count(0, 20)  # each call to time() moves 20 s on
    monkeypatch.setattr(loop_mod.time, "time", lambda: float(next(clock)))
    result = train_classifier(quick(color_data, tmp_path, epochs=6, time_limit=1.0, patience=0))
    assert result.epochs_run < 6 and result.stop_reason.startswith(f"time limit: {result.epochs_run} of 6 epochs")
    assert not (tmp_path / "resume.pt").exists()
