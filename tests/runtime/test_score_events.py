"""`edgecam score-events`: true events derived from hand-made truth files, one-to-one matching, the CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edgecam.cli import main
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios import create_scenario
from edgecam.runtime.scoring import PredEvent, TrueEvent, match, score_events
from tests.runtime.scenarios import frame, track

ZONE = [[100, 0], [200, 0], [200, 100], [100, 100]]  # the right half of a 200x100 frame
LINE = [[100, 100], [100, 0]]  # a -> b upwards: moving right is "in"
SECURITY = {
    "zones": [{"name": "yard", "polygon": ZONE, "classes": ["person"], "loiter_seconds": 3}],
    "lines": [{"name": "gate", "points": LINE}],
    "tamper": False,
    "debounce_frames": 1,
    "cooldown_seconds": 0,
}


def shelf_truth(tmp_path: Path, labels: list[list[str]], fps: float = 1, **extra) -> Path:
    n = len(labels[0])
    names = [f"s{i}" for i in range(n)]
    truth = {"version": 2, "rois": [[50 * i, 0, 50, 50] for i in range(n)], "slots": names, "fps": fps}
    truth.update(labels=labels, n_frames=len(labels), **extra)
    path = tmp_path / "shelf.json"
    path.write_text(json.dumps(truth))
    return path


def jsonl(tmp_path: Path, events: list[dict], name: str = "events.jsonl") -> Path:
    """One frame record per event (plus an event-less record), as the runtime's JSONL sink writes them."""
    lines = [{"frame": 0, "timestamp": 0.0, "source": "v.mp4", "results": []}]
    for i, e in enumerate(events):
        lines.append({"frame": i + 1, "timestamp": e["timestamp"], "source": "v.mp4", "results": [], "events": [e]})
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def ev(kind: str, t: float, **data) -> dict:
    return {"kind": kind, "source_id": "cam", "timestamp": t, **data}


def row(report: dict, kind: str) -> dict:
    return next(r for r in report["rows"] if r["kind"] == kind)


def states(*spans: tuple[str, int]) -> list[str]:
    """Per-second states of a slot from (state, seconds) spans."""
    return [state for state, seconds in spans for _ in range(seconds)]


def runs(*spans: tuple[str, int]) -> list[list[str]]:
    """Per-second truth labels of a one-slot shelf."""
    return [[state] for state in states(*spans)]


# ---- retail ----------------------------------------------------------------------------------------------------
THREE_GAPS = runs(*[("stocked", 10), ("empty", 10)] * 3, ("stocked", 10))


def test_retail_hits_late_alerts_and_false_alarms(tmp_path):
    truth = shelf_truth(tmp_path, THREE_GAPS)  # true out_of_stock at 10, 30, 50; restocked at 20, 40, 60
    events = [
        ev("out_of_stock", 12.0, slot="s0"),  # oos_seconds 2 after the change: on time
        ev("out_of_stock", 31.5, slot="s0"),  # early, within the window
        ev("out_of_stock", 53.5, slot="s0"),  # later than 50 + oos 2 + tolerance 1: a miss and a false alarm
        ev("out_of_stock", 25.0, slot="s0"),  # the slot is stocked: a false alarm
        ev("restocked", 20.5, slot="s0"),
        ev("restocked", 39.2, slot="s0"),
        ev("restocked", 60.0, slot="s0"),
        ev("restocked", 60.0, slot="s1"),  # no such slot in the truth
        ev("planogram", 5.0, compliance=100.0),  # not scored, counted
    ]
    report = score_events(jsonl(tmp_path, events), truth, tolerance=1.0, oos_seconds=2.0)
    oos = row(report, "out_of_stock")
    assert (oos["true"], oos["predicted"], oos["tp"], oos["fp"], oos["fn"]) == (3, 4, 2, 2, 1)
    assert oos["precision"] == 0.5 and oos["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert oos["median_delay"] == pytest.approx(1.75) and oos["max_delay"] == pytest.approx(2.0)
    back = row(report, "restocked")
    assert (back["true"], back["tp"], back["fp"], back["fn"]) == (3, 3, 1, 0)
    assert row(report, "low_stock")["true"] == 0 and row(report, "low_stock")["precision"] is None
    assert report["all"]["tp"] == 5 and report["ignored"] == {"planogram": 1}
    assert {(m["kind"], m["time"]) for m in report["missed"]} == {("out_of_stock", 50.0)}
    assert sorted(f["time"] for f in report["false_alarms"]) == [25.0, 53.5, 60.0]


def test_max_delay_replaces_the_built_in_wait(tmp_path):
    truth = shelf_truth(tmp_path, THREE_GAPS)
    events = jsonl(tmp_path, [ev("out_of_stock", 12.0, slot="s0")])
    assert row(score_events(events, truth, tolerance=1.0, oos_seconds=2.0), "out_of_stock")["tp"] == 1
    assert row(score_events(events, truth, tolerance=1.0, oos_seconds=2.0, max_delay=1.5), "out_of_stock")["tp"] == 0


def test_short_gaps_and_initial_states(tmp_path):
    first = states(("empty", 4), ("stocked", 3), ("empty", 1), ("stocked", 4), ("empty", 2))
    labels = [list(pair) for pair in zip(first, states(("low", 6), ("stocked", 8)), strict=True)]
    truth = shelf_truth(tmp_path, labels)
    report = score_events(
        jsonl(tmp_path, [ev("out_of_stock", 7.5, slot="s0"), ev("low_stock", 0.0, slot="s1")]),
        truth,
        tolerance=1.0,
        oos_seconds=3.0,
    )
    oos = row(report, "out_of_stock")
    # empty from the start for 4 s counts (at 0 s); the 1 s gap and the 2 s at the end are below oos_seconds
    assert (oos["true"], oos["tp"], oos["fp"]) == (1, 0, 1)
    assert [m["time"] for m in report["missed"] if m["kind"] == "out_of_stock"] == [0.0]
    assert row(report, "restocked")["true"] == 1 and row(report, "low_stock")["tp"] == 1  # low from the start


def test_time_behind_a_shopper_extends_the_window(tmp_path):
    labels = runs(("stocked", 5), ("empty", 20))
    occluded = [[0] if 5 <= f < 10 else [] for f in range(len(labels))]  # hidden for the first 5 s of the gap
    late = jsonl(tmp_path, [ev("out_of_stock", 5 + 3 + 1 + 4, slot="s0")])  # oos 3 + tolerance 1 + 4 s hidden
    seen = shelf_truth(tmp_path, labels, occluded=occluded)
    assert row(score_events(late, seen, tolerance=1.0, oos_seconds=3.0), "out_of_stock")["tp"] == 1
    blind = shelf_truth(tmp_path, labels)  # the same gap without occlusion: 13 s is late
    assert row(score_events(late, blind, tolerance=1.0, oos_seconds=3.0), "out_of_stock")["tp"] == 0


def test_matching_is_one_to_one_and_finds_the_most_matches():
    a, b = TrueEvent("x", "k", 0.0, 5.0), TrueEvent("x", "k", 4.0, 9.0)
    # nearest-first would give 4.5 to b (0.5 s away) and leave a unmatched; in order of the windows' ends, both match
    pairs, missed, false = match([a, b], [PredEvent("x", "k", 4.5, 1), PredEvent("x", "k", 8.0, 2)], tolerance=1)
    assert [(t.time, p.time) for t, p in pairs] == [(0.0, 4.5), (4.0, 8.0)] and not missed and not false
    twice = [PredEvent("x", "k", 1.0, 1), PredEvent("x", "k", 2.0, 2), PredEvent("x", "other", 1.0, 3)]
    pairs, missed, false = match([a], twice, tolerance=1)
    assert len(pairs) == 1 and [p.line for p in false] == [2, 3] and not missed


# ---- security --------------------------------------------------------------------------------------------------
def street_truth(tmp_path: Path, n: int = 20) -> Path:
    """Person 1 walks right along y = 50 from x = 50, 10 px a second, and vanishes at 11 s; vehicle 2 drives left
    from x = 190 and is still there at the end; person 3 stands in the zone from 15 s to the end."""
    boxes, ids = [], []
    for f in range(n):
        boxes.append([])
        ids.append([])
        if f <= 10:
            x = 50 + 10 * f
            boxes[-1].append([x - 5, 30, x + 5, 50, "person"])
            ids[-1].append(1)
        x = 190 - 10 * f
        boxes[-1].append([x - 8, 60, x + 8, 80, "vehicle"])
        ids[-1].append(2)
        if f >= 15:
            boxes[-1].append([145, 30, 155, 50, "person"])
            ids[-1].append(3)
    truth = {"version": 2, "classes": ["person", "vehicle"], "fps": 1, "n_frames": n, "boxes": boxes, "ids": ids}
    path = tmp_path / "street.json"
    path.write_text(json.dumps(truth))
    return path


def cameras_yaml(tmp_path: Path, scenario: str, config: dict, name: str = "cam", extra: int = 0) -> Path:
    cams = [{"name": name, "source": "v.mp4", "bundle": "b", "scenario": scenario, "scenario_config": config}]
    cams += [{"name": f"other{i}", "source": "v.mp4", "bundle": "b"} for i in range(extra)]
    path = tmp_path / f"cameras-{name}-{extra}.yaml"
    path.write_text(yaml.safe_dump({"cameras": cams}))
    return path


def test_security_zones_lines_and_loitering(tmp_path):
    truth, config = street_truth(tmp_path), cameras_yaml(tmp_path, "security", SECURITY)
    events = [
        ev("zone_enter", 6.0, zone="yard", track_id=7, **{"class": "person"}),  # true at 5 (x = 100, on the border)
        ev("zone_exit", 11.5, zone="yard", track_id=7, **{"class": "person"}),  # the person vanished at 11
        ev("loitering", 8.2, zone="yard", track_id=7, **{"class": "person"}),  # 3 s after entering
        ev("line_cross", 6.0, line="gate", direction="in", **{"class": "person"}),
        ev("line_cross", 6.0, line="gate", direction="out", **{"class": "person"}),  # wrong way: a false alarm
        ev("zone_enter", 0.0, zone="yard", **{"class": "vehicle"}),  # the zone is for people only
    ]
    report = score_events(jsonl(tmp_path, events), truth, config=config, tolerance=1.0)
    counts = {r["kind"]: (r["true"], r["tp"], r["fp"], r["fn"]) for r in report["rows"]}
    assert counts == {
        "zone_enter": (2, 1, 1, 1),
        "zone_exit": (1, 1, 0, 0),  # person 3 is still inside when the video ends: no exit
        "line_cross in": (1, 1, 0, 0),
        "line_cross out": (1, 0, 1, 1),  # the vehicle crossed leftwards at 10 s: missed
        "loitering": (2, 1, 0, 1),
    }
    assert row(report, "zone_enter")["median_delay"] == pytest.approx(1.0)
    assert {(m["kind"], m["key"], m["time"]) for m in report["missed"]} == {
        ("line_cross out", "gate/vehicle", 10.0),
        ("zone_enter", "yard/person", 15.0),
        ("loitering", "yard/person", 18.0),
    }


def test_security_scenario_on_the_truth_scores_perfectly(tmp_path):
    """The scenario itself, fed the truth's boxes as confirmed tracks, agrees with the scorer's true events."""
    truth_path, config = street_truth(tmp_path), cameras_yaml(tmp_path, "security", SECURITY)
    truth = json.loads(truth_path.read_text())
    sc = create_scenario("security", SECURITY, ("person", "vehicle"), "cam")
    events = []
    for f, (boxes, ids) in enumerate(zip(truth["boxes"], truth["ids"], strict=True)):
        tracks = [track(i, b[:4], class_id=["person", "vehicle"].index(b[4])) for b, i in zip(boxes, ids, strict=True)]
        events += [e.to_dict() for e in sc.update(frame(f), None, tracks, None)]
    report = score_events(jsonl(tmp_path, events), truth_path, config=config, tolerance=0.5)
    assert report["all"]["true"] == 7 and report["all"]["precision"] == 1.0 and report["all"]["recall"] == 1.0


def test_street_truth_needs_ids_and_zones(tmp_path):
    truth = json.loads(street_truth(tmp_path).read_text())
    del truth["ids"], truth["version"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(truth))
    config = cameras_yaml(tmp_path, "security", SECURITY)
    with pytest.raises(EdgecamError, match="no box `ids`"):
        score_events(jsonl(tmp_path, []), old, config=config)
    with pytest.raises(EdgecamError, match="needs its zones and lines"):
        score_events(jsonl(tmp_path, []), street_truth(tmp_path))
    with pytest.raises(EdgecamError, match="--camera"):
        score_events(
            jsonl(tmp_path, []), street_truth(tmp_path), config=cameras_yaml(tmp_path, "security", {}, extra=1)
        )


def arrivals_truth(tmp_path: Path, arrivals: list[float], fps: float = 2, seconds: float = 20) -> Path:
    """Person i appears standing in the yard zone at arrivals[i] seconds and stays to the end: a zone_enter each."""
    n = int(seconds * fps)
    boxes = [[[145, 30, 155, 50, "person"] for a in arrivals if f / fps >= a] for f in range(n)]
    ids = [[i for i, a in enumerate(arrivals) if f / fps >= a] for f in range(n)]
    truth = {"version": 2, "classes": ["person", "vehicle"], "fps": fps, "n_frames": n, "boxes": boxes, "ids": ids}
    path = tmp_path / "arrivals.json"
    path.write_text(json.dumps(truth))
    return path


def test_zone_cooldown_entries_it_suppresses_are_not_expected(tmp_path):
    """A 10 s zone cool-down: the entry at 5 s (3 s after the alert at 2) is suppressed by design, not missed; the
    one at 11.5 s (9.5 s after) falls at the cool-down's end, either way is right (so would one at 14 s, whose fate
    hangs on it); the one at 23 s is due."""
    zone = {k: v for k, v in SECURITY["zones"][0].items() if k != "loiter_seconds"}
    config = {**SECURITY, "zones": [{**zone, "cooldown_seconds": 10}], "lines": []}
    truth, cameras = arrivals_truth(tmp_path, [2, 5, 11.5, 23], seconds=30), cameras_yaml(tmp_path, "security", config)
    enter = lambda t: ev("zone_enter", t, zone="yard", **{"class": "person"})  # noqa: E731
    report = score_events(jsonl(tmp_path, [enter(2.5), enter(23.5)]), truth, config=cameras, tolerance=1.0)
    assert (row(report, "zone_enter")["true"], row(report, "zone_enter")["recall"]) == (2, 1.0)
    assert report["optional"] == {"true": 1, "matched": 0} and report["params"]["cooldowns"] == {"zone yard": 10}
    # the optional entry came: neither a hit nor a false alarm; an alert the cool-down forbids is a false alarm
    events = [enter(2.5), enter(5.5), enter(12.0), enter(23.5)]
    report = score_events(jsonl(tmp_path, events), truth, config=cameras, tolerance=1.0)
    r = row(report, "zone_enter")
    assert (r["true"], r["tp"], r["fp"], r["fn"]) == (2, 2, 1, 0) and report["optional"]["matched"] == 1
    assert [fa["time"] for fa in report["false_alarms"]] == [5.5]
    # without a cool-down, every entry is expected
    config["zones"][0]["cooldown_seconds"] = 0
    report = score_events(jsonl(tmp_path, events), truth, config=cameras_yaml(tmp_path, "security", config))
    assert row(report, "zone_enter")["true"] == 4 and report["optional"]["true"] == 0


def test_global_cooldown_covers_every_class_and_both_line_directions(tmp_path):
    """The scenario keys a cool-down by event type and line (both directions, every class): so does the scorer;
    the line counts still see every crossing."""
    truth = street_truth(tmp_path)  # the person crosses `in` at 5 s, the vehicle `out` at 10 s
    config = cameras_yaml(tmp_path, "security", {**SECURITY, "cooldown_seconds": 20})
    events = [
        ev("line_cross", 5.0, line="gate", direction="in", counts={"in": 1, "out": 0}, **{"class": "person"}),
    ]
    report = score_events(jsonl(tmp_path, events), truth, config=config, tolerance=1.0)
    assert row(report, "line_cross in")["tp"] == 1 and row(report, "line_cross out")["true"] == 0
    lines = report["counts"]["lines"]["gate"]
    assert lines == {"in": {"true": 1, "counted": 1}, "out": {"true": 1, "counted": 0}}
    assert report["counts"]["count_error"] == 0.5


def test_a_line_cross_naming_no_line_is_a_false_alarm_not_a_broken_truth(tmp_path):
    truth, config = street_truth(tmp_path), cameras_yaml(tmp_path, "security", SECURITY)
    events = [ev("line_cross", 5.0, line=["gate"], direction={"in": 1}, **{"class": "person"})]
    report = score_events(jsonl(tmp_path, events), truth, config=config)
    assert report["all"]["fp"] == 1 and report["counts"]["wrong"] == 2  # nothing counted: both crossings short


def test_line_counts_take_the_running_count(tmp_path):
    """A `line_cross` carries the line's running counts: crossings suppressed before it are counted."""
    truth = street_truth(tmp_path)
    config = cameras_yaml(tmp_path, "security", SECURITY)
    events = [ev("line_cross", 10.0, line="gate", direction="out", counts={"in": 1, "out": 1}, **{"class": "x"})]
    counts = score_events(jsonl(tmp_path, events), truth, config=config)["counts"]
    assert counts["wrong"] == 0 and counts["count_error"] == 0.0


# ---- CLI and bad input -----------------------------------------------------------------------------------------
def test_cli_table_and_json(tmp_path, capsys):
    truth = shelf_truth(tmp_path, THREE_GAPS)
    events = jsonl(tmp_path, [ev("out_of_stock", 12.0, slot="s0"), ev("out_of_stock", 25.0, slot="s0")])
    args = ["score-events", str(events), "--truth", str(truth), "--oos-seconds", "2", "--tolerance", "1"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert row(report, "out_of_stock")["tp"] == 1 and row(report, "out_of_stock")["fp"] == 1
    assert report["truth_version"] == 2 and report["params"]["oos_seconds"] == 2.0
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:6] == ["event", "true", "pred", "TP", "FP", "FN"]
    assert table[1].split()[:8] == ["out_of_stock", "3", "2", "1", "1", "2", "0.50", "0.33"]


@pytest.mark.parametrize("version", [1, 2])
def test_cli_reads_slots_and_oos_seconds_from_the_config(tmp_path, capsys, version):
    truth = shelf_truth(tmp_path, THREE_GAPS)
    if version == 1:  # written before truths had a version and slot names
        old = json.loads(truth.read_text())
        del old["version"], old["slots"]
        truth.write_text(json.dumps(old))
    slots = [{"name": "cola", "roi": [1, 0, 49, 50]}]  # drawn by hand: close to the truth's roi, not equal
    config = cameras_yaml(tmp_path, "retail", {"slots": slots, "oos_seconds": 4})
    events = jsonl(tmp_path, [ev("out_of_stock", 14.0, slot="cola")])
    assert main(["score-events", str(events), "--truth", str(truth), "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["oos_seconds"] == 4 and row(report, "out_of_stock")["tp"] == 1
    assert report["truth_version"] == version and report["params"]["slots"] == ["cola"]


def test_help_shows_the_default_tolerance(capsys):
    with pytest.raises(SystemExit):
        main(["score-events", "--help"])
    assert "(2.0)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_events", "events.jsonl: cannot read the events file"),
        ("missing_truth", "nope.json: cannot read the truth file"),
        ("bad_line", "bad.jsonl: line 3: not JSON"),
        ("bad_event", "bad.jsonl: line 2: an event without a `kind`"),
        ("not_truth", "not a ground-truth file"),
        ("malformed_truth", "malformed ground truth"),
        ("v1_shelf", "names no slots"),
        ("wrong_camera", "no camera named 'nope'"),
        ("bad_tolerance", "--tolerance"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, case, expected):
    truth = shelf_truth(tmp_path, THREE_GAPS)
    events = tmp_path / "events.jsonl"
    extra: list[str] = []
    if case != "missing_events":
        jsonl(tmp_path, [])
    if case == "missing_truth":
        truth = tmp_path / "nope.json"
    if case in ("bad_line", "bad_event"):
        events = tmp_path / "bad.jsonl"
        second = '{"frame": 1, "events": [{"timestamp": 1}]}' if case == "bad_event" else '{"frame": 1}'
        events.write_text('{"frame": 0, "events": []}\n' + second + '\n{"frame": 2,\n')
    if case == "not_truth":
        truth = events
    if case == "malformed_truth":
        truth.write_text(json.dumps({**json.loads(truth.read_text()), "occluded": 5}))
    if case == "v1_shelf":
        old = json.loads(truth.read_text())
        del old["slots"], old["version"]
        truth.write_text(json.dumps(old))
    if case == "wrong_camera":
        retail = cameras_yaml(tmp_path, "retail", {"slots": [{"name": "a", "roi": [0, 0, 50, 50]}]})
        extra = ["--config", str(retail), "--camera", "nope"]
    if case == "bad_tolerance":
        extra = ["--tolerance", "-1"]
    assert main(["score-events", str(events), "--truth", str(truth), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("edgecam score-events: error:") and expected in err


def test_false_alarms_behind_a_shopper_are_flagged(tmp_path, capsys):
    labels = runs(("stocked", 20))
    occluded = [[0] if 5 <= f < 8 else [] for f in range(len(labels))]
    truth = shelf_truth(tmp_path, labels, occluded=occluded)
    times = [6.0, 9.5, 15.0]  # behind the shopper, just after (within the 2 s tolerance), long after
    events = jsonl(tmp_path, [ev("low_stock", t, slot="s0") for t in times])
    report = score_events(events, truth)
    assert [(f["time"], f["occluded"]) for f in report["false_alarms"]] == [(6.0, True), (9.5, True), (15.0, False)]
    assert main(["score-events", str(events), "--truth", str(truth)]) == 0
    assert "2 of the false alarms came while a shopper covered the slot" in capsys.readouterr().out
