"""`edgecam score-events --tracks`: MOTA, IDF1 and ID switches of a run's tracked boxes against box ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgecam.cli import main
from edgecam.runtime.errors import EdgecamError
from tests.runtime.test_score_events import SECURITY, shelf_truth, street_truth

pytest.importorskip("motmetrics")
from edgecam.bench.track_score import iou_distances, score_tracks  # noqa: E402


def run_jsonl(tmp_path: Path, truth: Path, relabel=lambda f, tid: tid, shift: float = 0.0, skip=()) -> Path:
    """A run that saw exactly the truth's boxes (moved right by `shift` px), with track ids from `relabel`."""
    t = json.loads(truth.read_text())
    out = tmp_path / "run.jsonl"
    with out.open("w") as fh:
        for f, (boxes, ids) in enumerate(zip(t["boxes"], t["ids"], strict=True)):
            if f in skip:
                continue
            results = [
                {
                    "xyxy": [b[0] + shift, b[1], b[2] + shift, b[3]],
                    "score": 0.9,
                    "label": b[4],
                    "track_id": relabel(f, i),
                }
                for b, i in zip(boxes, ids, strict=True)
            ]
            results.append({"xyxy": [0, 0, 5, 5], "score": 0.2, "label": "person"})  # untracked: not the tracker's
            fh.write(json.dumps({"frame": f, "timestamp": f, "results": results}) + "\n")
    return out


def test_iou_distances():
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float)
    run = np.array([[0, 0, 10, 5], [21, 0, 31, 10]], float)
    d = iou_distances(truth, run, np.ones((2, 2), bool), 0.5)
    assert d[0, 0] == pytest.approx(0.5) and d[1, 1] == pytest.approx(1 - 90 / 110)
    assert np.isnan(d[0, 1]) and np.isnan(d[1, 0])
    assert np.isnan(iou_distances(truth, run, np.zeros((2, 2), bool), 0.5)).all()  # other classes never match
    assert iou_distances(truth, run[:0], np.ones((2, 0), bool), 0.5).shape == (2, 0)


def test_a_perfect_run_an_id_switch_and_a_drift(tmp_path):
    truth = street_truth(tmp_path)  # person 1 for frames 0-10, vehicle 2 all 20, person 3 from 15
    perfect = score_tracks(run_jsonl(tmp_path, truth), truth)
    assert perfect["mota"] == 1.0 and perfect["idf1"] == 1.0 and perfect["id_switches"] == 0
    assert perfect["truth_ids"] == 3 and perfect["frames"] == 20 and perfect["mean_iou"] == 1.0
    switched = score_tracks(run_jsonl(tmp_path, truth, relabel=lambda f, i: 9 if i == 1 and f >= 5 else i), truth)
    assert switched["id_switches"] == 1 and switched["mota"] < 1.0 and switched["idf1"] < 1.0
    # 5 px to the right: the 10 px-wide people fall below IoU 0.5 (1/3), the 16 px vehicle stays above (0.52)
    drift = score_tracks(run_jsonl(tmp_path, truth, shift=5.0), truth)
    assert drift["misses"] == drift["false_positives"] == 11 + 5 and drift["recall"] == pytest.approx(20 / 36, 1e-3)
    skipped = score_tracks(run_jsonl(tmp_path, truth, skip=range(1, 20, 2)), truth)
    assert skipped["frames"] == 10 and skipped["mota"] == 1.0


def test_cli_tracks_and_errors(tmp_path, capsys):
    truth = street_truth(tmp_path)
    config = tmp_path / "cameras.yaml"
    config.write_text(
        yaml.safe_dump({"cameras": [{"name": "cam", "scenario": "security", "scenario_config": SECURITY}]})
    )
    run = run_jsonl(tmp_path, truth)
    assert main(["score-events", str(run), "--truth", str(truth), "--config", str(config), "--tracks", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tracking"]["idf1"] == 1.0
    assert main(["score-events", str(run), "--truth", str(truth), "--config", str(config), "--tracks"]) == 0
    assert "MOTA 1.0, IDF1 1.0, 0 ID switches" in capsys.readouterr().out
    with pytest.raises(EdgecamError, match="street truth with box ids"):
        score_tracks(run, shelf_truth(tmp_path, [["stocked"]]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"frame": 0, "results": []}\n{"frame": 1, "results": [{"track_id": 1, "xyxy": [1, 2]}]}\n')
    with pytest.raises(EdgecamError, match="line 2: not a frame record with boxes"):
        score_tracks(bad, truth)
    with pytest.raises(EdgecamError, match="--iou"):
        score_tracks(run, truth, iou=0)


def test_a_real_tracked_run_on_a_street_video_is_scored(tmp_path, capsys):
    """The JSONL a security camera writes (tracked boxes of the tiny constant detector) is what --tracks reads."""
    train_synth = pytest.importorskip("edgecam.train.synth")
    from edgecam.runtime.bundle import write_manifest
    from tests.runtime.detect_fixtures import build_tiny_detect_bundle

    video = train_synth.make_security_video(tmp_path / "street.mp4", seconds=3, fps=5, size=(320, 240), seed=3)
    bundle = build_tiny_detect_bundle(tmp_path / "detector")
    write_manifest(bundle, {**json.loads((bundle / "edgecam.json").read_text()), "class_names": ["person", "vehicle"]})
    jsonl = tmp_path / "street.jsonl"
    camera = {"name": "street", "source": str(video.path), "bundle": str(bundle), "scenario": "security"}
    camera.update(scenario_config={**SECURITY, "zones": [], "lines": []}, sinks={"jsonl": str(jsonl)})
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump({"cameras": [camera]}))
    assert main(["run", "--config", str(config), "--duration", "60", "--json"]) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert any("track_id" in r for rec in records for r in rec["results"])  # the tracker ran
    truth = str(video.path.with_suffix(".json"))
    assert main(["score-events", str(jsonl), "--truth", truth, "--config", str(config), "--tracks", "--json"]) == 0
    tracking = json.loads(capsys.readouterr().out)["tracking"]
    assert tracking["frames"] == video.n_frames == len(records)
    truth_boxes = sum(len(b) for b in video.boxes)
    assert tracking["misses"] <= truth_boxes and tracking["truth_ids"] == len({i for ids in video.ids for i in ids})


def test_boxes_hidden_by_a_vehicle_are_dont_care(tmp_path):
    """Person 1 is hidden (visible 0.1) in frames 3-6: a run that finds nothing there misses nothing, and a run box
    on the hidden person is no false positive; a run that drops a visible box still misses it."""
    truth_path = street_truth(tmp_path)
    truth = json.loads(truth_path.read_text())
    truth["visible"] = [[0.1 if (i == 1 and 3 <= f <= 6) else 1.0 for i in ids] for f, ids in enumerate(truth["ids"])]
    hidden = tmp_path / "hidden.json"
    hidden.write_text(json.dumps(truth))
    gone = tmp_path / "gone"
    gone.mkdir()
    found = score_tracks(run_jsonl(tmp_path, hidden), hidden)
    assert found["mota"] == 1.0 and found["false_positives"] == 0 and found["ignored_boxes"] == 4
    # the run loses person 1 while hidden (no boxes): nothing is missed
    run = run_jsonl(gone, hidden)
    lines = [json.loads(x) for x in run.read_text().splitlines()]
    for rec in lines:
        if 3 <= rec["frame"] <= 6:
            rec["results"] = [r for r in rec["results"] if r.get("track_id") != 1]
    run.write_text("".join(json.dumps(x) + "\n" for x in lines))
    lost = score_tracks(run, hidden)
    assert lost["misses"] == 0 and lost["mota"] == 1.0 and lost["ignored_boxes"] == 0
    assert score_tracks(run, truth_path)["misses"] == 4  # the same run against a truth where he is visible
