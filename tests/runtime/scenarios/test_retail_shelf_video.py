"""End to end on a synthetic shelf video: readings from the ground truth, garbage while the shopper covers a slot.

Without occlusion handling the garbage makes `restocked` / `low_stock` / `out_of_stock` events the truth
contradicts; with it (the running background, or person boxes) there are none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runtime.scenarios.shelf_replay import replay

OFF = {"oos_seconds": 3, "min_score": 0, "occlusion": {"motion": False}}  # as before: every reading counts
ON = {"oos_seconds": 3}  # the defaults: a slot classifier gets the running background, min_score 0.6


@pytest.fixture(scope="module", params=[7, 2])
def video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    synth = pytest.importorskip("edgecam.train.synth")
    path = Path(tmp_path_factory.mktemp("shelf")) / "shelf.mp4"
    video = synth.make_shelf_video(path, seconds=6, fps=10, size=(640, 360), seed=request.param)
    assert sum(1 for s in video.shoppers if s) >= 10  # the shopper walks past while the video runs
    return video


def test_the_truth_file_records_the_shopper(video):
    meta = json.loads(video.path.with_suffix(".json").read_text())
    assert [[list(b) for b in boxes] for boxes in video.shoppers] == meta["shoppers"]
    assert len(meta["shoppers"]) == video.n_frames
    w, h = meta["size"]
    assert all(0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h for boxes in video.shoppers for x1, y1, x2, y2 in boxes)


def test_without_occlusion_handling_the_shopper_makes_false_events(video):
    assert replay(video, OFF).false_events  # the check below can fail


def test_the_running_background_leaves_no_false_events(video):
    result = replay(video, ON)
    assert result.false_events == []
    assert result.occluded_frames >= result.hidden_frames / 2  # it did see the shopper
    assert result.agree > 0.85


def test_person_boxes_leave_no_false_events(video):
    result = replay(video, ON, boxes=True)
    assert result.false_events == [] and result.agree > 0.95
