"""The hard street video (`make_security_video(..., hard=True)`): each actor does what its role says, measured on
the truth's own boxes against the truth's zone and line, so the security benchmark scores the scenario and the
tracker, not the generator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.scenarios.geometry import ground_point, point_in_polygon
from edgecam.runtime.scoring import score_events
from edgecam.train.synth import make_security_video
from edgecam.train.synth.street_hard import LOITER_SECONDS
from tests.runtime.scenarios import frame, track

FPS, SECONDS, SIZE, SEED = 5, 30, (320, 180), 7


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, object]:
    root = tmp_path_factory.mktemp("street-hard")
    normal = make_security_video(root / "normal.mp4", SECONDS, FPS, SIZE, SEED)
    hard = make_security_video(root / "hard.mp4", SECONDS, FPS, SIZE, SEED, hard=True)
    read = lambda v: json.loads(v.path.with_suffix(".json").read_text())  # noqa: E731
    return read(normal), read(hard), hard


def paths(truth: dict) -> dict[int, list[tuple[int, tuple[float, float]]]]:
    """id -> [(frame, ground point)]."""
    out: dict[int, list] = {}
    for f, (boxes, ids) in enumerate(zip(truth["boxes"], truth["ids"], strict=True)):
        for b, i in zip(boxes, ids, strict=True):
            out.setdefault(i, []).append((f, ground_point(tuple(b[:4]))))
    return out


def role_ids(truth: dict, role: str) -> list[int]:
    return [r["id"] for r in truth["roles"] if r["role"] == role]


def test_the_normal_video_keeps_its_keys_and_both_name_the_same_zone_and_line(videos):
    normal, hard, _ = videos
    assert "roles" not in normal and "hard" not in normal and hard["hard"] is True
    assert normal["geometry"] == hard["geometry"]  # the same street: the main random stream is untouched
    assert len(normal["visible"]) == len(normal["boxes"]) == SECONDS * FPS


def test_only_the_loiterer_stays_past_the_loiter_time(videos):
    _, hard, _ = videos
    zone = hard["geometry"]["zones"][0]["polygon"]
    dwell = {i: sum(point_in_polygon(p, zone) for _, p in steps) / FPS for i, steps in paths(hard).items()}
    (loiterer,) = role_ids(hard, "loiterer")
    assert dwell[loiterer] >= LOITER_SECONDS + 2
    people = [r["id"] for r in hard["roles"] if r["kind"] == "person" and r["id"] != loiterer]
    assert all(dwell[i] <= LOITER_SECONDS - 2 for i in people), dwell
    assert all(dwell[i] > 0 for i in role_ids(hard, "passer") + role_ids(hard, "group"))


def test_turning_back_crosses_twice_or_never(videos):
    _, hard, _ = videos
    gate = hard["geometry"]["lines"][0]["points"][0][0]  # a vertical line

    def crossings(i: int) -> list[int]:
        sides = [np.sign(p[0] - gate) for _, p in paths(hard)[i] if p[0] != gate]
        return [int(b) for a, b in zip(sides, sides[1:], strict=False) if a != b]

    (over,), (short,) = role_ids(hard, "turn_back_cross"), role_ids(hard, "turn_back_short")
    assert crossings(over) == [-1, 1] and crossings(short) == []
    assert all(len(crossings(i)) == 1 for i in role_ids(hard, "group") + role_ids(hard, "occluded"))


def test_the_group_overlaps(videos):
    _, hard, _ = videos
    group = role_ids(hard, "group")
    assert 2 <= len(group) <= 3
    ious = []
    for boxes, ids in zip(hard["boxes"], hard["ids"], strict=True):
        at = {i: b for b, i in zip(boxes, ids, strict=True)}
        if group[0] in at and group[1] in at:
            a, b = at[group[0]], at[group[1]]
            w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
            inter = max(0, w) * max(0, h)
            ious.append(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))
    assert len(ious) > 3 * FPS and np.median(ious) > 0.05 and np.median(ious) < 0.5


def test_the_truck_hides_the_person_for_about_a_second(videos):
    _, hard, _ = videos
    (person,) = role_ids(hard, "occluded")
    seen = [
        v
        for ids, vis in zip(hard["ids"], hard["visible"], strict=True)
        for i, v in zip(ids, vis, strict=True)
        if i == person
    ]
    hidden = sum(v < 0.3 for v in seen) / FPS
    assert 0.2 <= hidden <= 2.0 and seen[0] == 1.0 and seen[-1] == 1.0


def test_the_scenario_fed_the_truth_scores_perfectly(videos, tmp_path):
    """The security scenario with the truth's boxes as tracks agrees with the scorer on every event of the hard
    video: the roles produce the events they should, and the scorer counts them right."""
    _, hard, video = videos
    config = {**hard["geometry"], "cooldown_seconds": 0, "tamper": False, "debounce_frames": 1}
    sc = create_scenario("security", config, ("person", "vehicle"), "street")
    out = tmp_path / "events.jsonl"
    with out.open("w") as fh:
        for f, (boxes, ids) in enumerate(zip(hard["boxes"], hard["ids"], strict=True)):
            tracks = [
                track(i, b[:4], class_id=("person", "vehicle").index(b[4])) for b, i in zip(boxes, ids, strict=True)
            ]
            events = [e.to_dict() for e in sc.update(frame(f / FPS), None, tracks, None)]
            fh.write(json.dumps({"frame": f, "timestamp": f / FPS, "results": [], "events": events}) + "\n")
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(json.dumps({"cameras": [{"name": "street", "scenario": "security", "scenario_config": config}]}))
    report = score_events(out, video.path.with_suffix(".json"), cameras, "street", tolerance=0.5)
    by = {r["kind"]: r for r in report["rows"]}
    assert by["loitering"]["true"] == 1 and by["line_cross in"]["true"] >= 2 and by["line_cross out"]["true"] >= 2
    assert report["all"]["precision"] == 1.0 and report["all"]["recall"] == 1.0, report
    assert report["counts"]["count_error"] == 0.0


def test_a_short_hard_video_is_refused(tmp_path):
    with pytest.raises(EdgecamError, match="--seconds"):
        make_security_video(tmp_path / "short.mp4", 10, FPS, SIZE, SEED, hard=True)
