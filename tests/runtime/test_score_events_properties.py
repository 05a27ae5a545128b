"""Property: any truth file and any JSONL give a score report or an `EdgecamError`, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scoring import score_events

SCALARS = st.none() | st.booleans() | st.integers(-3, 30) | st.floats(allow_nan=True) | st.text(max_size=4)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
STATES = st.sampled_from(["stocked", "low", "empty"]) | JSON
COORD = st.floats(-10, 300)
BOX = st.lists(COORD | COORD | COORD | JSON, min_size=4, max_size=4).map(lambda b: [*b, "person"]) | JSON


@st.composite
def truths(draw: st.DrawFn) -> object:
    """Mostly nearly-valid shelf or street truths with some fields replaced by arbitrary JSON; sometimes any JSON."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    n = draw(st.integers(0, 8))
    if draw(st.booleans()):
        truth = {"version": 2, "fps": draw(st.sampled_from([1, 5, 0.5])), "rois": [[0, 0, 10, 10]] * 2}
        truth.update(slots=["a", "b"], labels=[[draw(STATES), draw(STATES)] for _ in range(n)])
        truth["occluded"] = draw(st.lists(st.lists(st.integers(-1, 3) | JSON, max_size=3), max_size=n + 1) | JSON)
    else:
        boxes = [draw(st.lists(BOX, max_size=2)) for _ in range(n)]
        ids = [[draw(st.integers(0, 2) | JSON) for _ in b] if isinstance(b, list) else b for b in boxes]
        truth = {"version": 2, "fps": 1, "classes": ["person", "vehicle"], "boxes": boxes, "ids": ids}
    for key in draw(st.lists(st.sampled_from(sorted(truth)), max_size=2)):
        truth[key] = draw(JSON)
    return truth


EVENT = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["out_of_stock", "low_stock", "restocked", "zone_enter", "line_cross", "planogram"]),
        "timestamp": st.floats(0, 8),
        "slot": st.sampled_from(["a", "b"]),
        "zone": st.just("z"),
        "line": st.just("l") | st.just("l") | JSON,
        "class": st.just("person"),
        "direction": st.sampled_from(["in", "out"]) | JSON,
        "counts": st.fixed_dictionaries({"in": st.integers(0, 5), "out": st.integers(0, 5)}) | JSON,
    }
)
ANY_EVENT = st.dictionaries(st.sampled_from(["kind", "timestamp", "slot", "line", "counts"]), JSON, max_size=3)
LINE = st.fixed_dictionaries({"frame": st.integers(0, 9), "events": st.lists(EVENT | EVENT | ANY_EVENT, max_size=3)})
CONFIG = {
    "cameras": [
        {
            "name": "shelf",
            "scenario": "retail",
            "scenario_config": {"slots": [{"name": "a", "roi": [0, 0, 10, 10]}], "oos_seconds": 1},
        },
        {
            "name": "cam",
            "scenario": "security",
            "scenario_config": {
                "zones": [{"name": "z", "polygon": [[0, 0], [100, 0], [100, 100]], "loiter_seconds": 1}],
                "lines": [{"name": "l", "points": [[50, 0], [50, 200]]}],
            },
        },
    ]
}


@settings(max_examples=150, deadline=None)
@given(truth=truths(), lines=st.lists(LINE | LINE | JSON, max_size=4), use_config=st.booleans())
def test_any_input_gives_a_report_or_an_edgecam_error(truth, lines, use_config):
    with tempfile.TemporaryDirectory() as tmp:
        truth_path, events, config = Path(tmp, "t.json"), Path(tmp, "e.jsonl"), Path(tmp, "c.yaml")
        truth_path.write_text(json.dumps(truth))
        events.write_text("".join(json.dumps(line) + "\n" for line in lines))
        config.write_text(yaml.safe_dump(CONFIG))
        try:
            camera = "shelf" if isinstance(truth, dict) and "rois" in truth else "cam"
            report = score_events(events, truth_path, config=config if use_config else None, camera=camera)
        except EdgecamError:
            return
        json.dumps(report)  # the --json output
        assert report["all"]["tp"] <= min(report["all"]["true"], report["all"]["predicted"])
        if report["scene"] == "street":  # line counts: one row per direction of the config's line
            assert set(report["counts"]["lines"]["l"]) == {"in", "out"} and report["counts"]["wrong"] >= 0
