"""`edgecam score-events` on a synthesized shelf video: the retail scenario fed the truth agrees with the scorer,
and a real `MultiCameraRunner` run's JSONL scores without error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from edgecam.cli import main
from edgecam.runtime.bundle import write_manifest
from edgecam.runtime.camera_config import load_cameras_config
from edgecam.runtime.cameras import MultiCameraRunner
from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.scenarios.retail import SLOT_LABELS
from edgecam.runtime.scoring import RETAIL_KINDS
from tests.runtime.scenarios import classification, frame, track

FPS, SECONDS, SIZE, SEED = 5, 12, (320, 240), 7  # seed 7: a slot is emptied, one restocked, the shopper walks by


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    train_synth = pytest.importorskip("edgecam.train.synth")
    video = train_synth.make_shelf_video(
        tmp_path_factory.mktemp("shelf") / "shelf.mp4", seconds=SECONDS, fps=FPS, size=SIZE, seed=SEED
    )
    truth = json.loads(video.path.with_suffix(".json").read_text())
    assert truth["version"] == 2 and any(truth["occluded"])  # the shopper hides some slots for a while
    return video.path, truth


def retail_config(truth: dict) -> dict:
    slots = [{"name": n, "roi": r} for n, r in zip(truth["slots"], truth["rois"], strict=True)]
    return {"slots": slots, "oos_seconds": 2, "cooldown_seconds": 0}


def test_the_retail_scenario_fed_the_truth_scores_perfectly(shelf, tmp_path, capsys):
    """Slot states straight from the truth (occluded slots read "occluded"): every alert is right and on time, so
    the scorer's true events and the scenario's rules (debounce, oos_seconds, occlusion) agree."""
    path, truth = shelf
    config = retail_config(truth)
    sc = create_scenario("retail", config, SLOT_LABELS, "shelf")
    out = tmp_path / "events.jsonl"
    with out.open("w") as fh:
        for f, (labels, hidden) in enumerate(zip(truth["labels"], truth["occluded"], strict=True)):
            results = [classification("occluded" if i in hidden else s, SLOT_LABELS) for i, s in enumerate(labels)]
            events = [e.to_dict() for e in sc.update(frame(f / FPS), None, [], results)]
            fh.write(json.dumps({"frame": f, "timestamp": f / FPS, "results": [], "events": events}) + "\n")
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(
        yaml.safe_dump({"cameras": [{"name": "shelf", "scenario": "retail", "scenario_config": config}]})
    )
    truth_path = str(path.with_suffix(".json"))
    assert main(["score-events", str(out), "--truth", truth_path, "--config", str(cameras), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["oos_seconds"] == 2
    assert {r["kind"] for r in report["rows"] if r["true"]} == {"out_of_stock", "low_stock", "restocked"}
    assert report["all"]["precision"] == 1.0 and report["all"]["recall"] == 1.0, report
    oos = next(r for r in report["rows"] if r["kind"] == "out_of_stock")
    assert 2.0 <= oos["median_delay"] <= 2.0 + 3 / FPS  # oos_seconds plus the debounce frames


def test_a_real_run_on_the_video_is_scored(shelf, tmp_path, tiny_bundle, capsys):
    """The JSONL the runtime writes for a retail camera is what the scorer reads (whatever the tiny model says)."""
    path, truth = shelf
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "slots"))
    manifest = json.loads((bundle / "edgecam.json").read_text())
    write_manifest(bundle, {**manifest, "class_names": ["empty", "low", "stocked"]})
    jsonl = tmp_path / "shelf.jsonl"
    camera = {"name": "shelf", "source": str(path), "bundle": str(bundle), "scenario": "retail"}
    camera.update(scenario_config=retail_config(truth), sinks={"jsonl": str(jsonl)})
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump({"cameras": [camera]}))
    summary = MultiCameraRunner(load_cameras_config(config)).run(duration=60)
    assert all(c["error"] is None for c in summary.cameras)
    written = [e for line in jsonl.read_text().splitlines() for e in json.loads(line).get("events", [])]
    assert any(e["kind"] in RETAIL_KINDS for e in written)  # the tiny model's colours change with the slots
    truth_path = str(path.with_suffix(".json"))
    assert main(["score-events", str(jsonl), "--truth", truth_path, "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["all"]["predicted"] == sum(e["kind"] in RETAIL_KINDS for e in written)
    assert report["all"]["tp"] + report["all"]["fp"] == report["all"]["predicted"]


STREET_ZONES = {
    "zones": [{"name": "frontage", "polygon": [[0, 170], [640, 170], [640, 360], [0, 360]], "loiter_seconds": 4}],
    "lines": [{"name": "crossing", "points": [[320, 170], [320, 360]], "classes": ["person", "vehicle"]}],
    "tamper": False,
}  # examples/cameras.yaml's street zone and line at 640x360


@pytest.mark.parametrize("cooldown", [0, 10])
def test_the_security_scenario_fed_the_street_truth(tmp_path, capsys, cooldown):
    """Boxes straight from the truth as confirmed tracks: every zone and line event is right and none is missed,
    with no cool-down and with the default 10 s one per zone / line, which the scorer reads from the config: the
    events it suppresses are not expected (so fewer are)."""
    train_synth = pytest.importorskip("edgecam.train.synth")
    video = train_synth.make_security_video(tmp_path / "street.mp4", seconds=SECONDS, fps=FPS, size=(640, 360), seed=3)
    config = {**STREET_ZONES, "cooldown_seconds": cooldown}
    sc = create_scenario("security", config, ("person", "vehicle"), "street")
    out = tmp_path / "events.jsonl"
    with out.open("w") as fh:
        for f, (boxes, ids) in enumerate(zip(video.boxes, video.ids, strict=True)):
            cls = [("person", "vehicle").index(b.cls) for b in boxes]
            tracks = [track(i, b.xyxy, class_id=c) for b, i, c in zip(boxes, ids, cls, strict=True)]
            events = [e.to_dict() for e in sc.update(frame(f / FPS), None, tracks, None)]
            fh.write(json.dumps({"frame": f, "timestamp": f / FPS, "results": [], "events": events}) + "\n")
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(
        yaml.safe_dump({"cameras": [{"name": "street", "scenario": "security", "scenario_config": config}]})
    )
    truth_path = str(video.path.with_suffix(".json"))
    assert main(["score-events", str(out), "--truth", truth_path, "--config", str(cameras), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    kinds = {r["kind"] for r in report["rows"] if r["true"]}
    assert {"zone_enter", "zone_exit", "line_cross in"} <= kinds
    assert report["all"]["precision"] == 1.0 and report["all"]["recall"] == 1.0, report
    assert report["params"]["cooldowns"] == {"zone frontage": cooldown, "line crossing": cooldown}
    crossings = sum(r["true"] for r in report["rows"] if r["kind"].startswith("line_cross"))
    if cooldown == 0:
        assert crossings == report["counts"]["true"] >= 2 and report["counts"]["count_error"] == 0.0
    else:  # one shared cool-down for both directions: at most one crossing event expected per 10 s
        assert crossings + report["optional"]["true"] <= 2 < report["counts"]["true"]
