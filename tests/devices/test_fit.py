"""`edgecam fit` on the tiny classifier: a budget it can meet (a verified bundle, the most accurate candidate that
meets it, judged against fit.json's own table), one it cannot (exit 1, the closest with its gap, no bundle), the time
limit, and bad input. The grid is small: 2 ratios x 2 sizes x INT8, one fine-tune epoch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgecam.cli import main
from edgecam.devices.fit import (
    Candidate,
    FitOptions,
    choose,
    closest,
    precisions_for,
    resolve_budget,
    should_skip,
    unit_order,
)
from edgecam.devices.fit_report import closest_message
from edgecam.devices.profiles import load_profile
from edgecam.runtime.errors import EdgecamError

GRID = ["--ratios", "0,0.5", "--sizes", "32,24", "--precisions", "int8", "--finetune-epochs", "1"]
QUICK = ["--runs", "5", "--calib", "16", "--json"]


def fit_cli(checkpoint: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", str(checkpoint), "--device", "x86-generic", "--data", str(data), "--out", str(out), *GRID, *QUICK,
            *extra]  # fmt: skip


@pytest.fixture(scope="module")
def met(tmp_path_factory, tiny_checkpoint, color_data):
    """A fit whose budget (10 s per frame) every candidate meets; the later tests reuse its cache."""
    out = tmp_path_factory.mktemp("fit")
    code = main(fit_cli(tiny_checkpoint, color_data, out, "--latency-ms", "10000"))
    return code, out, json.loads((out / "fit.json").read_text())


@pytest.mark.slow
def test_a_budget_it_can_meet_returns_the_most_accurate_candidate_as_a_verified_bundle(met):
    code, out, report = met
    assert code == 0
    rows = report["candidates"]
    grid = {(r, s, "int8") for r in (0.0, 0.5) for s in (32, 24)}
    assert {(c["ratio"], c["size"], c["precision"]) for c in rows} == grid, "fit.json lists every candidate"
    assert all(c["status"] == "measured" and c["accuracy"] is not None for c in rows)
    assert all(c["device_latency_ms"] == pytest.approx(c["latency_here_ms"] * 1.0) for c in rows), "x86 factor 1"
    chosen = [c for c in rows if c["chosen"]]
    assert len(chosen) == 1 and rows[report["chosen"]] is not None and rows[report["chosen"]]["chosen"]
    meeting = [c for c in rows if c["meets_budget"]]
    assert chosen[0]["accuracy"] == max(c["accuracy"] for c in meeting)
    # the bundle: the chosen variant alone, at the chosen size, sealed, and `edgecam verify` passes
    manifest = json.loads((out / "bundle" / "edgecam.json").read_text())
    assert set(manifest["variants"]) == {chosen[0]["variant"]} == {"openvino-int8"}
    assert manifest["preprocess"]["height"] == chosen[0]["size"]
    assert manifest["variants"]["openvino-int8"]["metrics"]["top1"] == chosen[0]["accuracy"]
    assert main(["verify", str(out / "bundle")]) == 0
    assert report["verify"]["passed"] and report["budget"]["from"] == "command line"
    assert (out / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_budget_it_cannot_meet_exits_1_with_the_closest_and_no_bundle(met, tiny_checkpoint, color_data, capsys):
    _, out, _ = met
    assert (out / "bundle").is_dir()  # from the fit above: a run that meets nothing must not leave it claimed
    code = main(fit_cli(tiny_checkpoint, color_data, out, "--latency-ms", "0.0001"))
    assert code == 1
    err = capsys.readouterr().err
    report = json.loads((out / "fit.json").read_text())
    rows = report["candidates"]
    assert all(c["checkpoint_cached"] for c in rows), "the pruned and resized checkpoints come from the cache"
    assert report["chosen"] is None and report["bundle"] is None and not (out / "bundle").exists()
    assert all(c["meets_budget"] is False for c in rows) and (out / "fit.png").is_file()
    near = min(rows, key=lambda c: c["device_latency_ms"])
    line = [ln for ln in err.splitlines() if "nothing meets the budget" in ln]
    assert len(line) == 1 and f"closest: {near['label']}:" in line[0] and "budget 0.0001 ms" in line[0]
    gap = float(re.search(r"— (\d+) % over", line[0]).group(1))
    assert gap == round((near["device_latency_ms"] / 0.0001 - 1) * 100)


@pytest.mark.slow
def test_the_time_limit_stops_the_search_and_lists_what_was_not_tried(met, tiny_checkpoint, color_data):
    _, out, _ = met
    code = main(fit_cli(tiny_checkpoint, color_data, out, "--latency-ms", "10000", "--time-limit", "0.0001"))
    report = json.loads((out / "fit.json").read_text())
    status = [c["status"] for c in report["candidates"]]
    assert code == 0 and report["stopped_for_time"]
    assert status[0] == "measured" and set(status[1:]) == {"not tried"} and len(status) == 4
    assert report["candidates"][0]["chosen"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"checkpoint": "missing.pt"}, "checkpoint not found"),
        ({"--device": "toaster"}, "unknown device profile 'toaster'"),
        ({"budget": ["--fps", "10", "--latency-ms", "5"]}, "not both"),
        ({"budget": ["--ratios", "0,1.5"]}, "--ratios must lie in"),
        ({"budget": ["--precisions", "fp16"]}, "fp16 have no onnxruntime variant"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, color_data, capsys, change, message):
    """Checked before anything is loaded or built: the checkpoint here is not even read."""
    checkpoint = tmp_path / change.get("checkpoint", "best.pt")
    if "checkpoint" not in change:
        checkpoint.write_bytes(b"not read")
    device = change.get("--device", "raspberry-pi-4")
    args = ["fit", str(checkpoint), "--device", device, "--data", str(color_data), "--out", str(tmp_path / "o")]
    assert main(args + change.get("budget", [])) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("edgecam fit: error:") and message in err
    assert not (tmp_path / "o").exists(), "nothing was built"


def test_importing_fit_loads_neither_torch_nor_train_nor_export():
    """DESIGN.md: devices/ reaches train/ and export/ only inside fit's functions, lazily."""
    code = (
        "import sys, edgecam.devices.fit, edgecam.devices.fit_build, edgecam.devices.fit_report; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('edgecam.train', 'edgecam.export'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_data_that_does_not_fit_the_model_stops_at_the_first_candidate_with_exit_2(tmp_path, tiny_checkpoint, capsys):
    """The model as given must export and measure; when it cannot, the input is wrong and the grid is not tried."""
    from tests.conftest import write_color_dataset

    other = write_color_dataset(tmp_path / "data", 3, seed=5, split="val")
    (other / "val" / "red").rename(other / "val" / "purple")
    args = ["fit", str(tiny_checkpoint), "--device", "x86-generic", "--data", str(other), "--out", str(tmp_path / "o")]
    assert main([*args, "--precisions", "fp32", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'purple' is not among the model's classes" in err
    assert not (tmp_path / "o" / "fit.json").exists()


# ---------------------------------------------------------------------------------------- the rules, alone


def row(ratio: float, size: int, accuracy: float, latency: float, meets: bool, precision: str = "int8") -> Candidate:
    return Candidate(ratio, size, precision, "openvino", "openvino-int8", "measured", accuracy, latency, latency,
                     latency, meets)  # fmt: skip


def test_choose_takes_the_most_accurate_among_those_that_meet_the_budget():
    rows = [row(0, 64, 0.99, 9.0, False), row(0.3, 64, 0.95, 4.0, True), row(0.5, 48, 0.97, 4.5, True)]
    rows.append(Candidate(0.5, 32, "int8", "openvino", "openvino-int8", status="failed", accuracy=1.0))
    assert choose(rows) is rows[2]
    assert choose([rows[0]]) is None
    tie = [row(0, 64, 0.97, 4.0, True), row(0.3, 64, 0.97, 3.0, True)]
    assert choose(tie) is tie[1], "on equal accuracy, the faster one"
    assert closest(rows) is rows[1]


def test_closest_message_says_how_far_over_the_budget():
    near = row(0.5, 64, 0.9, 7.9, False)
    text = closest_message(near, load_profile("raspberry-pi-4"), 5.0)
    assert text == "closest: prune 0.5, 64 px, int8: 7.9 ms on raspberry-pi-4 (estimated), budget 5 ms — 58 % over"


def test_units_come_cheap_first_and_after_the_checkpoint_they_start_from():
    order = unit_order((0.0, 0.3, 0.5), (64, 48, 32), 64)
    assert order[0] == (0.0, 64) and len(order) == 9
    for r, s in order:
        if r > 0 and s != 64:
            assert order.index((0.0, s)) < order.index((r, s)), "a pruned smaller model starts from the resized one"


def test_accuracy_control_is_skipped_only_when_plain_int8_lost_no_more_than_allowed():
    plain = row(0, 64, 0.98, 1.0, True)
    ac = Candidate(0, 64, "int8-ac", "openvino", "openvino-int8")
    plain.gate = {"drop": 0.3}
    assert "would change nothing" in should_skip(ac, [plain, ac], 0.5)
    plain.gate = {"drop": 1.2}
    assert should_skip(ac, [plain, ac], 0.5) == ""


def test_budget_and_precisions_come_from_the_profile_unless_overridden():
    pi = load_profile("raspberry-pi-4")  # 5 FPS x 2 cameras, onnxruntime, int8 + fp32
    assert resolve_budget(pi, FitOptions())[0].latency_ms_per_frame() == pytest.approx(100.0)
    assert resolve_budget(pi, FitOptions(cameras=4))[0].latency_ms_per_frame() == pytest.approx(50.0)
    assert resolve_budget(pi, FitOptions(fps=20, cameras=1))[0].latency_ms_per_frame() == pytest.approx(50.0)
    assert resolve_budget(pi, FitOptions(latency_ms=3))[0].latency_ms_per_frame() == 3
    with pytest.raises(EdgecamError, match="invalid budget"):
        resolve_budget(pi, FitOptions(fps=-1))
    assert precisions_for(pi, None) == ("fp32", "int8", "int8-ac")
    assert precisions_for(load_profile("x86-generic"), ("int8", "fp16")) == ("fp16", "int8")
