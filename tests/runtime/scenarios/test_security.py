"""Security rules driven frame by frame with hand-made tracks and a clock the test controls."""

from __future__ import annotations

import json

import pytest

from edgecam.runtime import scenarios
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios import SecurityScenario, create_scenario, register_scenario, scenario_names
from edgecam.runtime.scenarios.base import Scenario
from edgecam.runtime.types import Event
from tests.runtime.scenarios import classification, frame, walker

NAMES = ("person", "vehicle")
PERSON, VEHICLE = 0, 1
ZONE = {"name": "yard", "polygon": [[100, 100], [200, 100], [200, 200], [100, 200]]}
LINE = {"name": "gate", "points": [[0, 100], [300, 100]]}
SCENE = ("clear", "person", "vehicle", "tampered")


def make(**config) -> SecurityScenario:
    config.setdefault("cooldown_seconds", 0)
    sc = create_scenario("security", config, NAMES, "cam")
    assert isinstance(sc, SecurityScenario)
    return sc


def run(sc: SecurityScenario, steps, dt: float = 1.0) -> list[Event]:
    """steps: one list of tracks per frame, frames `dt` seconds apart from t=0."""
    events = []
    for i, tracks in enumerate(steps):
        events += sc.update(frame(i * dt), None, tracks, None)
    return events


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


# ---- zones -------------------------------------------------------------------------------------------------------
IN, OUT, EDGE = (150, 150), (50, 150), (100, 150)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ([OUT, OUT, IN, IN, IN, OUT, OUT], ["zone_enter", "zone_exit"]),
        ([OUT, IN, OUT, OUT], []),  # a one-frame blip never enters
        ([OUT, IN, OUT, IN, OUT, IN, IN], ["zone_enter"]),  # jitter at the border counts once
        ([IN, IN, OUT, IN, IN, IN], ["zone_enter"]),  # a one-frame blip out never exits
        ([OUT, EDGE, EDGE], ["zone_enter"]),  # on the border is inside
        ([IN, IN, OUT, OUT, IN, IN], ["zone_enter", "zone_exit", "zone_enter"]),
    ],
)
def test_zone_enter_exit_with_debounce(path, expected):
    sc = make(zones=[ZONE])
    events = run(sc, [[walker(1, *p)] for p in path])
    assert kinds(events) == expected
    assert all(e.data["snapshot"] and e.data["zone"] == "yard" and e.source_id == "cam" for e in events)


def test_enter_is_reported_on_the_debounce_frame_with_occupancy():
    sc = make(zones=[ZONE], debounce_frames=3)
    path = [OUT, IN, IN, IN, IN]
    events = run(sc, [[walker(1, *p)] for p in path])
    (enter,) = events
    assert enter.timestamp == 1 + sc.debounce - 1  # first inside at t=1, confirmed debounce frames later
    assert enter.data["occupancy"] == {"person": 1}
    assert sc.state()["zones"]["yard"] == {"occupancy": {"person": 1}, "total": 1}


@pytest.mark.parametrize("state", ["tentative", "lost"])
def test_unconfirmed_tracks_never_trigger(state):
    sc = make(zones=[{**ZONE, "loiter_seconds": 1}], lines=[LINE])
    path = [(150, 50), (150, 150), (150, 150), (150, 150), (150, 50), (150, 50)]  # crosses the line, in the zone
    assert run(sc, [[walker(1, *p, state=state)] for p in path]) == []
    assert sc.state()["zones"]["yard"]["total"] == 0
    assert sc.state()["lines"]["gate"] == {"in": 0, "out": 0}
    assert sc.state()["active_tracks"] == 0


def test_lost_track_keeps_its_place_and_an_ended_track_leaves():
    sc = make(zones=[ZONE])
    run(sc, [[walker(1, *IN)]] * 3)
    assert sc.update(frame(3), None, [walker(1, *OUT, state="lost")], None) == []  # a guess, not a move
    assert sc.state()["zones"]["yard"]["total"] == 1
    (gone,) = sc.update(frame(4), None, [], None)
    assert (gone.kind, gone.data["reason"], gone.data["occupancy"]) == ("zone_exit", "track_ended", {})


def test_class_filter_and_occupancy_per_class():
    sc = make(zones=[{**ZONE, "classes": ["vehicle"]}, {**ZONE, "name": "all"}])
    steps = [[walker(1, *IN, class_id=PERSON), walker(2, 160, 160, class_id=VEHICLE)]] * 2
    events = run(sc, steps)
    assert sorted((e.data["zone"], e.data["track_id"]) for e in events) == [("all", 1), ("all", 2), ("yard", 2)]
    zones = sc.state()["zones"]
    assert zones["yard"]["occupancy"] == {"vehicle": 1}
    assert zones["all"]["occupancy"] == {"person": 1, "vehicle": 1}


def test_loitering_once_per_track_and_zone():
    sc = make(zones=[{**ZONE, "loiter_seconds": 5}])
    dt = 0.5
    path = [IN] * 30 + [OUT] * 4 + [IN] * 30  # in for 15 s, out, in again for 15 s
    events = run(sc, [[walker(1, *p)] for p in path], dt=dt)
    loiter = [e for e in events if e.kind == "loitering"]
    assert len(loiter) == 1
    assert loiter[0].timestamp == pytest.approx(0.0 + 5)  # first inside frame at t=0
    assert loiter[0].data["dwell_seconds"] == pytest.approx(5)
    assert kinds(events).count("zone_enter") == 2


def test_cooldown_limits_events_but_not_counts():
    sc = make(zones=[ZONE], cooldown_seconds=10)
    steps = [[walker(1, *OUT), walker(2, *OUT)], [walker(1, *IN), walker(2, *OUT)], [walker(1, *IN), walker(2, *OUT)]]
    steps += [[walker(1, *IN), walker(2, *IN)]] * 2
    events = run(sc, steps)
    assert kinds(events) == ["zone_enter"]  # the second person entered 1 s later, inside the cool-down
    assert sc.state()["zones"]["yard"]["total"] == 2
    assert sc.state()["suppressed_events"] == {"zone_enter": 1}
    # after the cool-down an event goes out again
    later = sc.update(frame(20), None, [walker(1, *OUT), walker(2, *IN)], None)
    later += sc.update(frame(21), None, [walker(1, *OUT), walker(2, *IN)], None)
    assert kinds(later) == ["zone_exit"]


# ---- lines -------------------------------------------------------------------------------------------------------
ABOVE, BELOW, ON = (150, 50), (150, 150), (150, 100)


@pytest.mark.parametrize(
    ("config", "path", "directions", "counts"),
    [
        ({}, [ABOVE, ABOVE, BELOW, BELOW], ["in"], {"in": 1, "out": 0}),  # down the image = right of a->b = in
        ({}, [BELOW, BELOW, ABOVE, ABOVE], ["out"], {"in": 0, "out": 1}),
        ({}, [ABOVE, BELOW, BELOW, ABOVE, ABOVE, BELOW, BELOW], ["in", "out", "in"], {"in": 2, "out": 1}),
        ({}, [ABOVE, BELOW, ABOVE, BELOW, ABOVE, ABOVE], [], {"in": 0, "out": 0}),  # jitter across the line
        ({}, [ABOVE, ON, ON, BELOW, BELOW], ["in"], {"in": 1, "out": 0}),  # standing on the line is no side
        ({}, [(400, 50), (400, 50), (400, 150), (400, 150)], [], {"in": 0, "out": 0}),  # round the end
        ({"direction": "a_to_b"}, [ABOVE, BELOW, BELOW, ABOVE, ABOVE], ["in"], {"in": 1, "out": 0}),
        ({"direction": "b_to_a"}, [ABOVE, BELOW, BELOW, ABOVE, ABOVE], ["out"], {"in": 0, "out": 1}),
        ({"classes": ["vehicle"]}, [ABOVE, BELOW, BELOW], [], {"in": 0, "out": 0}),
        ({"classes": ["person"]}, [ABOVE, BELOW, BELOW], ["in"], {"in": 1, "out": 0}),
    ],
)
def test_line_crossing(config, path, directions, counts):
    sc = make(lines=[{**LINE, **config}])
    events = run(sc, [[walker(7, *p)] for p in path])
    assert [e.data["direction"] for e in events] == directions
    assert all(e.kind == "line_cross" and e.data["line"] == "gate" and e.data["snapshot"] for e in events)
    assert sc.state()["lines"]["gate"] == counts
    if events:
        assert events[-1].data["counts"] == counts


def test_line_counts_run_through_the_cooldown():
    sc = make(lines=[LINE], cooldown_seconds=60)
    steps = [[walker(i, *ABOVE) for i in range(3)]] + [[walker(i, *BELOW) for i in range(3)]] * 2
    events = run(sc, steps)
    assert len(events) == 1
    assert sc.state()["lines"]["gate"] == {"in": 3, "out": 0}
    assert sc.state()["suppressed_events"] == {"line_cross": 2}


# ---- tamper ------------------------------------------------------------------------------------------------------
def tamper_run(sc: SecurityScenario, labels: str, score: float = 0.9) -> list[tuple[str, float]]:
    """labels: one letter per second, T = tampered, c = clear, - = no classifier result this frame."""
    out = []
    for t, ch in enumerate(labels):
        result = None if ch == "-" else [classification("tampered" if ch == "T" else "clear", SCENE, score)]
        out += [(e.kind, e.timestamp) for e in sc.update(frame(t), None, [], result)]
    return out


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ("TTcTTTT", [("tamper", 6)]),  # the glitch at t=2 restarts the on-timer at t=3
        ("TTT", []),  # held 2 s < on_seconds
        ("TTTTcccccc", [("tamper", 3), ("tamper_cleared", 9)]),
        ("TTTTcccTccccc", [("tamper", 3)]),  # a tampered glitch during clearing restarts the off-timer
        ("TTTTcccTcccccc", [("tamper", 3), ("tamper_cleared", 13)]),
        ("T--T", [("tamper", 3)]),  # frames without a classifier result do not interrupt
    ],
)
def test_tamper_hysteresis(labels, expected):
    sc = make()
    assert tamper_run(sc, labels) == expected
    assert sc.tamper.on_seconds == 3 and sc.tamper.off_seconds == 5  # the defaults the table assumes


def test_tamper_below_threshold_and_state():
    sc = make(tamper={"threshold": 0.8, "on_seconds": 1, "off_seconds": 1})
    assert tamper_run(sc, "TTTT", score=0.7) == []
    assert tamper_run(sc, "TT", score=0.9) == [("tamper", 1)]
    state = sc.state()["tamper"]
    assert state["active"] and state["since"] == 1


def test_tamper_kinds_and_cooldown():
    sc = make(cooldown_seconds=30, tamper={"on_seconds": 0, "off_seconds": 0, "kinds": ["covered"]})
    names = ("clear", "covered", "tampered_defocused")
    seq = ["covered", "clear", "tampered_defocused", "clear"]
    events = [e for t, lab in enumerate(seq) for e in sc.update(frame(t), None, [], [classification(lab, names)])]
    assert [(e.kind, e.data["kind"]) for e in events] == [("tamper", "covered"), ("tamper_cleared", "covered")]
    assert sc.state()["suppressed_events"] == {"tamper": 1, "tamper_cleared": 1}


def test_tamper_can_be_turned_off():
    sc = make(tamper=False)
    assert tamper_run(sc, "TTTTTTTT") == []


# ---- config, registry, state ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]}, "zones\\[0\\].polygon"),
        ({"zones": [{**ZONE, "classes": ["persn"]}]}, "zones\\[0\\].classes"),
        ({"zones": [ZONE, ZONE]}, "zones\\[1\\].name"),
        ({"zones": [{**ZONE, "loiter_secnds": 3}]}, "zones\\[0\\]"),
        ({"zones": [{**ZONE, "loiter_seconds": -1}]}, "zones\\[0\\].loiter_seconds"),
        ({"zones": {"name": "z"}}, "zones"),
        ({"lines": [{**LINE, "direction": "up"}]}, "lines\\[0\\].direction"),
        ({"lines": [{**LINE, "points": [[0, 0]]}]}, "lines\\[0\\].points"),
        ({"lines": [{**LINE, "classes": ["bike"]}]}, "lines\\[0\\].classes"),
        ({"debounce_frames": 0}, "debounce_frames"),
        ({"debounce_frames": 1.5}, "debounce_frames"),
        ({"cooldown_seconds": "10"}, "cooldown_seconds"),
        ({"tamper": {"threshold": 2}}, "tamper.threshold"),
        ({"tamper": {"on_secs": 2}}, "tamper"),
        ({"tamper": {"kinds": "covered"}}, "tamper.kinds"),
        ({"zonez": []}, "unknown key 'zonez'"),
    ],
)
def test_config_errors_name_the_key(config, key):
    with pytest.raises(EdgecamError, match=key) as err:
        create_scenario("security", config, NAMES, "cam")
    assert err.value.fix  # every config error says how to fix it


def test_registry():
    assert {"security", "retail", "none"} <= set(scenario_names())
    with pytest.raises(EdgecamError, match="unknown scenario 'securty'"):
        create_scenario("securty", {}, NAMES, "cam")
    with pytest.raises(EdgecamError, match="already registered"):
        register_scenario("security")(SecurityScenario)
    with pytest.raises(EdgecamError, match="mapping"):
        create_scenario("security", ["zones"], NAMES, "cam")  # type: ignore[arg-type]
    none = create_scenario("none", None, NAMES, "cam")
    assert none.update(frame(0), None, [walker(1, *IN)], None) == [] and none.state() == {"scenario": "none"}


def test_a_new_scenario_registers_once(monkeypatch):
    monkeypatch.setattr(scenarios, "_SCENARIOS", dict(scenarios._SCENARIOS))  # leave the real registry untouched

    @register_scenario("test_only_counter")
    class Counter(Scenario):
        name = "test_only_counter"

        def update(self, frame, detections, tracks, classifications):
            return []

        def state(self):
            return {}

    assert isinstance(create_scenario("test_only_counter", {}, NAMES, "cam"), Counter)
    with pytest.raises(EdgecamError, match="test_only_counter"):
        register_scenario("test_only_counter")(Counter)


def test_state_is_json():
    sc = make(zones=[ZONE], lines=[LINE])
    run(sc, [[walker(1, *ABOVE)], [walker(1, *IN)], [walker(1, *IN)]])
    state = json.loads(json.dumps(sc.state()))
    assert state["scenario"] == "security"
    assert state["zones"]["yard"]["total"] == 1 and state["lines"]["gate"]["in"] == 1 and state["active_tracks"] == 1
