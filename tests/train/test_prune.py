"""Structured pruning: channels really go, outputs keep their format, pruned checkpoints rebuild and export."""

import json

import pytest
import torch
from torch import nn

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.preprocess import PreprocessSpec
from edgecam.train.checkpoint import load_checkpoint, save_checkpoint
from edgecam.train.config import TrainConfig
from edgecam.train.flops import count_flops
from edgecam.train.loop import epochs_that_fit
from edgecam.train.prune import (
    PRUNED_KEY,
    channel_widths,
    check_prune_args,
    protected_layers,
    prune_model,
    restore_pruned_channels,
)
from edgecam.train.prune_finetune import PruneConfig, prune_checkpoint, prune_sweep
from edgecam.train.prune_tasks import distill_classifier, distill_detector
from edgecam.train.registry import create_model

FAST = dict(onnx_latency=False, latency_runs=3, progress=False)


def model_and_shape(name, size):
    torch.manual_seed(0)
    return create_model(name, num_classes=3).eval(), (3, size, size)


def out_widths(model):
    """Output channels of the protected layers, by name."""
    names = {m: n for n, m in model.named_modules()}
    return {names[m]: channel_widths(model)[names[m]] for m in protected_layers(model)}


def save_det_checkpoint(path, model=None, data="", pruned=None, classes=("a", "b", "c")):
    model = model or create_model("test_det_tiny", num_classes=len(classes))
    config = TrainConfig(task="detect", model="test_det_tiny", data=str(data), imgsz=64, batch=4, epochs=1)
    extra = {"detect": {"strides": [8, 16, 32]}, **({PRUNED_KEY: pruned} if pruned else {})}
    save_checkpoint(
        path,
        model,
        name="test_det_tiny",
        args={"num_classes": len(classes)},
        task="detect",
        class_names=tuple(classes),
        spec=PreprocessSpec.square(64, resize="letterbox"),
        epoch=0,
        metrics={},
        config=config.to_dict(),
        extra=extra,
    )
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On two cores shared with other jobs one torch thread is many times faster than two fighting over them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pruned_run(tiny_checkpoint, tmp_path_factory):
    """The tiny classifier pruned by half and fine-tuned for one epoch with distillation."""
    out = tmp_path_factory.mktemp("pruned")
    report = prune_checkpoint(tiny_checkpoint, out, PruneConfig(ratio=0.5, finetune_epochs=1, distill=True, **FAST))
    return out, report


@pytest.mark.parametrize(
    "ratio, target, match",
    [
        (None, None, "exactly one"),
        (0.5, 0.1, "exactly one"),
        (0.0, None, "between 0 and 1"),
        (1.0, None, "between 0 and 1"),
        (-0.2, None, "between 0 and 1"),
        (1.5, None, "between 0 and 1"),
        (None, 0.0, "positive"),
        (None, -1.0, "positive"),
    ],
)
def test_bad_arguments_are_clear_errors(ratio, target, match):
    with pytest.raises(EdgecamError, match=match):
        check_prune_args(ratio, target)
    with pytest.raises(EdgecamError, match=match):
        prune_model(*model_and_shape("test_tiny", 32), ratio=ratio, target_gflops=target)


def test_bad_options_fail_before_any_work(tiny_checkpoint, tmp_path):
    with pytest.raises(EdgecamError, match="between 0 and 1"):
        prune_checkpoint(tiny_checkpoint, tmp_path / "a", PruneConfig(ratio=1.0, **FAST))
    with pytest.raises(EdgecamError, match="between 0 and 1"):
        prune_sweep(tiny_checkpoint, tmp_path / "b", [0.5, 1.2], PruneConfig(**FAST))
    with pytest.raises(EdgecamError, match="distill-loss"):
        PruneConfig(ratio=0.5, distill_loss="kl")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.7])
@pytest.mark.parametrize("global_pruning", [False, True])
def test_pruning_removes_channels_and_keeps_the_output(ratio, global_pruning):
    model, shape = model_and_shape("ecnet_s", 32)
    x = torch.rand(2, *shape)
    before, widths, protected = count_flops(model, shape), channel_widths(model), out_widths(model)
    prune_model(model, shape, ratio=ratio, global_pruning=global_pruning)
    after = count_flops(model, shape)
    kept = sum(channel_widths(model).values()) / sum(widths.values())
    assert kept == pytest.approx(1 - ratio, abs=0.08), "about `ratio` of the channels must go"
    assert after["params_m"] / before["params_m"] <= 1 - ratio + 0.1
    assert after["gflops"] / before["gflops"] <= 1 - ratio + 0.1
    assert out_widths(model) == protected, "stem and classifier keep their channels"
    assert all(w % 8 == 0 for n, w in channel_widths(model).items() if n not in protected), "rounded to 8"
    assert model(x).shape == (2, 3)


def test_detector_pruning_keeps_preds_and_head_outputs():
    model, shape = model_and_shape("ecdet_s", 64)
    x = torch.rand(1, *shape)
    preds, protected = model(x), out_widths(model)
    assert len(protected) == 1 + 2 * len(model.heads)  # stem + cls/reg of every head
    before = count_flops(model, shape)
    prune_model(model, shape, ratio=0.5)
    assert model(x).shape == preds.shape
    assert out_widths(model) == protected
    assert count_flops(model, shape)["gflops"] < 0.5 * before["gflops"]
    assert model.neck.lateral[0][0].out_channels < 64, "the neck (adds + upsample) is pruned too"


@pytest.mark.parametrize("name, size", [("ecnet_s", 32), ("ecdet_s", 64)])
@pytest.mark.parametrize("fraction", [0.5, 0.7])
def test_target_gflops_lands_just_below_the_target(name, size, fraction):
    model, shape = model_and_shape(name, size)
    base = count_flops(model, shape)["gflops"]
    record = prune_model(model, shape, target_gflops=fraction * base)
    got = count_flops(model, shape)["gflops"]
    assert (fraction - 0.1) * base < got <= fraction * base, "at the target, not a coarse step past it"
    assert 0 < record["channel_ratio"] < 0.9 and record["target_gflops"] == fraction * base
    if record["channel_ratio"] > 0.01:  # (any ratio at all removes a channel quantum: nothing smaller to try)
        less, _ = model_and_shape(name, size)
        prune_model(less, shape, ratio=record["channel_ratio"] - 0.01)
        assert count_flops(less, shape)["gflops"] > fraction * base, "no smaller ratio meets it (to the tolerance)"
    with pytest.raises(EdgecamError, match="already needs"):
        prune_model(*model_and_shape("ecnet_s", 32), target_gflops=2 * base)
    with pytest.raises(EdgecamError, match="cannot reach"):
        prune_model(*model_and_shape("ecnet_s", 32), target_gflops=base / 1000)


def test_pruned_checkpoint_rebuilds_with_weights_only(tmp_path):
    model = create_model("test_det_tiny", num_classes=3).eval()
    record = prune_model(model, (3, 64, 64), ratio=0.5)
    path = save_det_checkpoint(tmp_path / "p.pt", model, pruned=record)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw[PRUNED_KEY]["history"], "the pruning history travels in plain lists"
    reloaded, meta = load_checkpoint(path)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x))
    assert channel_widths(reloaded) == channel_widths(model)
    assert meta["detect"]["strides"] == [8, 16, 32]


def test_unpruned_checkpoints_and_bad_records(tmp_path):
    model = create_model("test_tiny", num_classes=3)
    assert restore_pruned_channels(model, None) is model
    with pytest.raises(EdgecamError, match="format"):
        restore_pruned_channels(model, {"format": 99})
    det_record = prune_model(create_model("test_det_tiny", num_classes=3), (3, 64, 64), ratio=0.5)
    with pytest.raises(EdgecamError, match="does not fit"):
        restore_pruned_channels(create_model("test_tiny", num_classes=3), det_record)


@pytest.mark.parametrize(
    "fn, kwargs",
    [(distill_classifier, {"temperature": 4.0}), (distill_detector, {"kind": "mse"}), (distill_detector, {})],
)
def test_distillation_losses_pull_the_student_to_the_teacher(fn, kwargs):
    torch.manual_seed(0)
    teacher = torch.randn(4, 10, 7)
    student = torch.zeros(4, 10, 7, requires_grad=True)
    loss = fn(student, teacher, **kwargs)
    loss.backward()
    assert loss > fn(teacher, teacher, **kwargs) - 1e-6 and student.grad.abs().sum() > 0
    if fn is distill_detector:
        assert fn(teacher, teacher, **kwargs).abs() < 1e-5, "zero when the student agrees with the teacher"
        assert student.grad[..., :4].abs().sum() > 0, "box log-distances are distilled too"


def test_detector_distillation_is_on_the_task_loss_scale():
    """Normalised by the teacher's total score, as the task loss is by its targets': not a mean over every anchor and
    class, and box terms of background anchors (teacher score ~0) hardly count."""
    teacher = torch.full((2, 1000, 4 + 5), -12.0)
    teacher[:, :10, 4] = 4.0  # ten confident anchors per image
    student = teacher.clone()
    student[:, :10, 4] = 0.0
    assert distill_detector(student, teacher, box_weight=0) > 0.5
    moved = teacher.clone()
    moved[:, 10:, :4] += 1.0  # background anchors' boxes differ
    assert distill_detector(moved, teacher) < 0.05


def test_prune_report_and_fine_tuned_checkpoint(pruned_run, tiny_checkpoint):
    out, report = pruned_run
    assert json.loads((out / "prune_report.json").read_text())["after"] == report["after"]
    before, after = report["before"], report["after"]
    for key in ("gflops", "params_m", "state_dict_mb", "torch_ms", "top1"):
        assert key in before and key in after
    assert after["gflops"] < before["gflops"] and after["params_m"] < before["params_m"]
    assert report["finetune"]["distill"] and len(report["history"]) == 1
    assert (out / "metrics.csv").read_text().count("\n") == 2
    assert after["top1"] >= 0.6, "the colour task survives pruning + one epoch of fine-tuning"
    model, meta = load_checkpoint(out / "best.pt")
    assert meta[PRUNED_KEY]["ratio"] == 0.5 and meta["class_names"] == ["blue", "green", "red"]
    assert count_flops(model, (3, 32, 32))["gflops"] == after["gflops"]


@pytest.mark.parametrize(
    "limit, seconds, fit",
    [
        (None, [10.0], 2**31),  # no limit
        (1.0, [], 2**31),  # nothing measured yet
        (1.0, [10.0], 6),  # 50 s left: five more 10 s epochs
        (1.0, [10.0, 25.0], 4),  # the last epoch took 15 s: two more fit in the 35 s left
        (1.0, [10.0, 20.0, 59.0], 3),  # no time for another
        (0.5, [10.0, 40.0], 2),  # already past the limit: stop
    ],
)
def test_epochs_that_fit_in_the_time_limit(limit, seconds, fit):
    assert epochs_that_fit(limit, [{"seconds": s} for s in seconds]) == fit


def test_fine_tune_time_limit_shortens_the_run_and_its_schedule(tiny_checkpoint, tmp_path):
    """A limit far shorter than one epoch: the first epoch runs, the plan shrinks to it and the run ends there."""
    cfg = PruneConfig(ratio=0.5, finetune_epochs=4, time_limit=1e-6, **FAST)
    report = prune_checkpoint(tiny_checkpoint, tmp_path, cfg)
    tuned = report["finetune"]
    assert len(report["history"]) == tuned["epochs_run"] == tuned["planned_epochs"] == 1
    assert tuned["stopped_for_time"] and tuned["time_limit"] == 1e-6
    with pytest.raises(EdgecamError, match="time-limit"):
        PruneConfig(ratio=0.5, time_limit=0)


def test_fine_tune_is_a_warm_restart_at_a_lower_learning_rate(pruned_run, tiny_checkpoint):
    _, report = pruned_run
    _, meta = load_checkpoint(tiny_checkpoint)
    assert report["finetune"]["lr"] == pytest.approx(meta["config"]["lr"] * 0.5)
    assert not report["finetune"]["stopped_for_time"] and report["finetune"]["planned_epochs"] == 1


def test_a_pruned_checkpoint_can_be_pruned_again(pruned_run, tmp_path):
    out, first = pruned_run
    report = prune_checkpoint(out / "best.pt", tmp_path, PruneConfig(ratio=0.3, finetune_epochs=0, **FAST))
    model, meta = load_checkpoint(tmp_path / "best.pt")
    assert count_flops(model, (3, 32, 32))["gflops"] == report["after"]["gflops"] <= first["after"]["gflops"]
    assert meta[PRUNED_KEY]["base"]["gflops"] == first["before"]["gflops"], "the base stays the unpruned model"


def test_pruned_checkpoint_exports_with_parity(pruned_run, color_data, tmp_path):
    from edgecam.export.bundle_writer import export_bundle

    out, report = pruned_run
    manifest = export_bundle(out / "best.pt", tmp_path / "bundle", data=color_data, variants=("onnx-fp32",))
    assert manifest["variants"]["onnx-fp32"]["metrics"]["parity"]["passed"]
    assert manifest["model"]["gflops"] == report["after"]["gflops"]


def test_detector_prune_and_fine_tune_with_distillation(tmp_path):
    from edgecam.train.synth import synth_detection

    names = synth_detection("security", tmp_path / "data", 6, seed=1, imgsz=(96, 64))["names"]
    ckpt = save_det_checkpoint(tmp_path / "det.pt", data=tmp_path / "data" / "data.yaml", classes=names)
    cfg = PruneConfig(ratio=0.5, finetune_epochs=1, distill=True, distill_loss="mse", **FAST)
    report = prune_checkpoint(ckpt, tmp_path / "run", cfg)
    assert report["metric"] == "map50" and "map50" in report["after"] and report["finetune"]["distill_loss"] == "mse"
    model, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert meta["detect"]["strides"] == [8, 16, 32]
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 8 * 8 + 4 * 4 + 2 * 2, 4 + len(names))


def test_sweep_plots_metric_against_gflops(tiny_checkpoint, tmp_path):
    sweep = prune_sweep(tiny_checkpoint, tmp_path, [0.3, 0.6], PruneConfig(finetune_epochs=0, **FAST))
    assert (tmp_path / "accuracy_vs_gflops.png").stat().st_size > 0
    assert [p["ratio"] for p in sweep["points"]] == [0.0, 0.3, 0.6]
    assert all("top1" in p and p["gflops"] > 0 for p in sweep["points"])
    assert (tmp_path / "ratio_0.3" / "best.pt").is_file() and (tmp_path / "prune_report.json").is_file()


def test_cli_prune(tiny_checkpoint, tmp_path, capsys):
    from edgecam.cli import main

    args = ["prune", str(tiny_checkpoint), "--out", str(tmp_path / "run"), "--no-onnx-latency"]
    assert main([*args, "--ratio", "0.5", "--finetune-epochs", "0", "--latency-runs", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["after"]["gflops"] < report["before"]["gflops"]
    assert main([*args, "--ratio", "0.5", "--target-gflops", "0.1"]) == 2
    assert "exactly one of --ratio and --target-gflops" in capsys.readouterr().err
    assert main([*args, "--ratios", "0.2,half"]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
    assert main([*args, "--ratio", "0.5", "--finetune-time-limit", "0"]) == 2
    assert "--finetune-time-limit must be positive" in capsys.readouterr().err


def test_protected_layers_of_both_families():
    cls_model, _ = model_and_shape("test_tiny", 32)
    assert protected_layers(cls_model) == [cls_model.features[0][0], cls_model.classifier]
    with pytest.raises(EdgecamError, match="no convolutions"):
        protected_layers(nn.Sequential(nn.Linear(2, 2)))
