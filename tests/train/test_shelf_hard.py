"""The hard shelf video (`make_shelf_video(..., hard=True)`): its truth says what the frames show, so the alert
benchmark built on it scores the scenario, not the generator."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.scenarios.retail import SLOT_LABELS
from edgecam.runtime.scoring import score_events
from edgecam.train.synth import make_shelf_video
from edgecam.train.synth.shelf_hard import MAX_SHAKE, shake_frame
from tests.runtime.scenarios import classification, frame

FPS, SECONDS, SIZE, SEED = 5, 20, (320, 240), 11


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, object]:
    root = tmp_path_factory.mktemp("hard")
    normal = make_shelf_video(root / "normal.mp4", SECONDS, FPS, SIZE, SEED)
    hard = make_shelf_video(root / "hard.mp4", SECONDS, FPS, SIZE, SEED, hard=True)
    read = lambda v: json.loads(v.path.with_suffix(".json").read_text())  # noqa: E731
    return read(normal), read(hard), hard


def test_the_normal_video_has_no_hard_keys_and_the_hard_one_keeps_its_layout(videos):
    normal, hard, _ = videos
    assert not {"hard", "shake", "light", "stops", "hidden_changes"} & normal.keys()
    assert hard["version"] == normal["version"] == 2
    assert hard["rois"] == normal["rois"] and hard["slots"] == normal["slots"]  # the main random stream is untouched


def test_only_the_hidden_slot_changes_states_and_light_changes_no_state(videos):
    """Lighting and shake never change a state; the one rewritten slot changes exactly at the hidden changes."""
    normal, hard, _ = videos
    changed = {i for a, b in zip(normal["labels"], hard["labels"], strict=True) for i in range(len(a)) if a[i] != b[i]}
    names = {hard["slots"].index(c["slot"]) for c in hard["hidden_changes"]}
    assert changed <= names and len(names) == 1
    (i,) = names
    column = [row[i] for row in hard["labels"]]
    flips = [f for f in range(1, len(column)) if column[f] != column[f - 1]]
    assert flips == [c["frame"] for c in hard["hidden_changes"]]


def test_each_hidden_change_happens_behind_a_stopped_shopper(videos):
    _, hard, _ = videos
    assert len(hard["hidden_changes"]) == 2  # emptied, then restocked
    for c in hard["hidden_changes"]:
        i, f = hard["slots"].index(c["slot"]), c["frame"]
        assert i in hard["occluded"][f], c
        assert hard["labels"][f - 1][i] == c["from"] and hard["labels"][f][i] == c["to"]
        stop = next(s for s in hard["stops"] if s["slot"] == c["slot"] and s["frames"][0] <= f < s["frames"][1])
        assert all(i in hard["occluded"][g] for g in range(*stop["frames"]) if g < len(hard["occluded"]))
    for s in hard["stops"]:
        assert 1.0 <= (s["frames"][1] - s["frames"][0]) / FPS <= 5.0 + 1 / FPS


def test_shake_is_recorded_per_frame_and_small(videos):
    _, hard, _ = videos
    assert len(hard["shake"]) == hard["n_frames"] == len(hard["light"])
    assert any(s != [0, 0] for s in hard["shake"])
    assert all(abs(dx) <= MAX_SHAKE and abs(dy) <= MAX_SHAKE for dx, dy in hard["shake"])


def test_shake_frame_moves_the_pixels_by_the_offset():
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    moved = shake_frame(img, 2, -3)
    assert np.array_equal(moved[0:37, 2:60], img[3:40, 0:58])
    assert shake_frame(img, 0, 0) is img


def test_the_light_step_shows_in_the_frames(videos):
    """The wall above the top shelf (no shopper reaches it) brightens or dims with the recorded gain."""
    _, hard, video = videos
    light = hard["light"]
    step = max(range(1, len(light)), key=lambda f: abs(light[f] / light[f - 1] - 1))
    assert abs(light[step] / light[step - 1] - 1) >= 0.14
    cap, means = cv2.VideoCapture(str(video.path)), []
    for _ in range(step + 1):
        ok, img = cap.read()
        assert ok
        means.append(float(img[:10].mean()))
    cap.release()
    assert means[step] / means[step - 1] == pytest.approx(light[step] / light[step - 1], abs=0.05)


def test_the_scenario_fed_the_hard_truth_scores_perfectly(videos, tmp_path):
    """Fed the truth's states (occluded slots read "occluded"), the retail scenario's alerts are all right: the
    scorer's true events for a change made behind a shopper agree with the scenario's rules."""
    _, hard, video = videos
    config = {"slots": [{"name": n, "roi": r} for n, r in zip(hard["slots"], hard["rois"], strict=True)]}
    config.update(oos_seconds=2, cooldown_seconds=0)
    sc = create_scenario("retail", config, SLOT_LABELS, "shelf")
    out = tmp_path / "events.jsonl"
    with out.open("w") as fh:
        for f, (labels, hidden) in enumerate(zip(hard["labels"], hard["occluded"], strict=True)):
            results = [classification("occluded" if i in hidden else s, SLOT_LABELS) for i, s in enumerate(labels)]
            events = [e.to_dict() for e in sc.update(frame(f / FPS), None, [], results)]
            fh.write(json.dumps({"frame": f, "timestamp": f / FPS, "results": [], "events": events}) + "\n")
    report = score_events(out, video.path.with_suffix(".json"), oos_seconds=2)
    assert report["all"]["precision"] == 1.0 and report["all"]["recall"] == 1.0, report
    written = [json.loads(line)["events"] for line in out.read_text().splitlines()]
    kinds = {e["kind"] for es in written for e in es if e["slot"] == hard["hidden_changes"][0]["slot"]}
    assert {"out_of_stock", "restocked"} <= kinds  # the changes made behind shoppers are true events, and found


def test_data_video_hard_flag_writes_the_hard_truth(tmp_path, capsys):
    from edgecam.cli import main

    out = tmp_path / "shelf.mp4"
    args = ["data", "video", "--out", str(out), "--seconds", "3", "--fps", "5", "--size", "320x240", "--seed", "4"]
    assert main([*args, "--hard", "--json"]) == 0
    truth = json.loads(out.with_suffix(".json").read_text())
    assert truth["hard"] is True and len(truth["shake"]) == len(truth["light"]) == 15
    assert main(args) == 0
    assert "shake" not in json.loads(out.with_suffix(".json").read_text())
