"""`edgecam bench-scenarios` end to end on one tiny video: its section reports what the scorer found, pooled rows are
sums of the per-video ones, and writing it keeps the rest of BENCHMARKS.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecam.bench.real import read_section, write_section
from edgecam.bench.scenario_accuracy import CAUSES, SECTION, causes, pooled, run_all, section_lines, targets
from edgecam.runtime.bundle import write_manifest
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scoring import score_events
from tests.runtime.conftest import build_tiny_bundle


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip("edgecam.train.synth")
    root = tmp_path_factory.mktemp("scenarios")
    bundle = build_tiny_bundle(root / "tiny")  # a colour classifier renamed to the slot states: any output will do
    write_manifest(
        bundle, {**json.loads((bundle / "edgecam.json").read_text()), "class_names": ["empty", "low", "stocked"]}
    )
    logged: list[str] = []
    out = run_all(
        root / "work", bundle, tuning=(2,), held_out=(7,), seconds=4, fps=5, size=(320, 240), log=logged.append
    )
    assert len(logged) == 4 and logged[-1].startswith("4/4 held_out seed 7 hard")  # progress for every video
    return root, out


def test_every_video_is_run_and_scored_as_score_events_would(results):
    root, out = results
    assert [(r["seed"], r["variant"]) for r in out["tuning"]] == [(2, "normal"), (2, "hard")]
    assert [(r["seed"], r["variant"]) for r in out["held_out"]] == [(7, "normal"), (7, "hard")]
    assert json.loads((root / "work" / "results.json").read_text())["held_out"][0]["seed"] == 7
    for row in out["held_out"]:
        stem = root / "work" / f"{row['variant']}-{row['seed']}"
        again = score_events(stem.with_suffix(".jsonl"), stem.with_suffix(".json"), stem.with_suffix(".yaml"), "shelf")
        assert again["rows"] == row["report"]["rows"]
        assert row["report"]["params"]["oos_seconds"] == 3  # examples/cameras.yaml's shelf camera
        for kind, r in ((r["kind"], r) for r in row["report"]["rows"]):
            assert len(row["delays"][kind]) == r["tp"]


def test_pooled_rows_sum_the_videos_and_targets_follow_them(results):
    _, out = results
    rows = out["held_out"]
    p = pooled(rows, "out_of_stock")
    per = [next(x for x in r["report"]["rows"] if x["kind"] == "out_of_stock") for r in rows]
    assert (p["true"], p["predicted"], p["tp"]) == tuple(sum(x[k] for x in per) for k in ("true", "predicted", "tp"))
    for row in rows:  # every miss and false alarm has exactly one cause
        c, report = causes(row), row["report"]
        assert set(c) == set(CAUSES)
        assert sum(v for k, v in c.items() if k.startswith("missed")) == len(report["missed"])
        assert sum(v for k, v in c.items() if k.startswith("false")) == len(report["false_alarms"])
        occluded = sum(bool(f.get("occluded")) for f in report["false_alarms"])
        assert c["false: by an occluder"] == occluded
    met = {t: ok for t, _, ok in targets(rows, 3.0)}
    assert met["precision >= 0.95"] == (p["precision"] is not None and p["precision"] >= 0.95)
    assert met["recall >= 0.95"] == (p["recall"] is not None and p["recall"] >= 0.95)


def test_the_section_is_written_beside_the_others(results, tmp_path):
    _, out = results
    lines = section_lines(out, "edgecam bench-scenarios --work W --bundle B --out BENCHMARKS.md")
    assert lines[0] == SECTION
    text = "\n".join(lines)
    assert "Held-out seeds 7 were never used" in text and "tuning seeds 2" in text
    starts = [line.split(" | ")[:2] for line in lines if line.startswith("| ")]
    assert starts.count(["| 7", "normal"]) == starts.count(["| 7", "hard"]) == 1  # a per-video row each
    assert starts.count(["| 2", "normal"]) == starts.count(["| 2", "hard"]) == 1
    assert ("NOT met" in text) == (not all(ok for *_, ok in targets(out["held_out"], 3.0)))
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    write_section(md, lines)
    write_section(md, lines)  # a second run replaces the section
    assert md.read_text().count(SECTION) == 1 and "## Other\n\nkept" in md.read_text()
    assert read_section(md, SECTION) == lines[: len(read_section(md, SECTION))]


def test_a_seed_in_both_sets_or_a_missing_bundle_is_an_error(tmp_path):
    with pytest.raises(EdgecamError, match="no slot classifier bundle"):
        run_all(tmp_path / "w", tmp_path / "none")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "edgecam.json").write_text("{}")
    with pytest.raises(EdgecamError, match="both tuning and held out"):
        run_all(tmp_path / "w", tmp_path / "b", tuning=(1, 2), held_out=(2, 3))


def test_causes_put_each_error_down_to_the_hard_part_behind_it(tmp_path):
    """A hand-made hard video: light steps at 5 s, slot B is changed behind shoppers."""
    (tmp_path / "hard-1.json").write_text(
        json.dumps({"fps": 10, "light": [1.0] * 50 + [0.8] * 150, "hidden_changes": [{"slot": "B", "frame": 30}]})
    )
    missed = [
        {"kind": "out_of_stock", "key": "B", "time": 3.0},  # behind a shopper
        {"kind": "out_of_stock", "key": "A", "time": 4.0},  # due at 7 s: 2 s after the step
        {"kind": "low_stock", "key": "C", "time": 11.0},  # due 6 s after the step: other
        {"kind": "low_stock", "key": "D", "time": 1.0},  # before the step: other
    ]
    false_alarms = [
        {"kind": "out_of_stock", "key": "A", "time": 14.0, "occluded": False},  # late
        {"kind": "low_stock", "key": "E", "time": 9.0, "occluded": True},
        {"kind": "restocked", "key": "A", "time": 14.0, "occluded": False},  # no restocked was missed: other
    ]
    row = {
        "config": str(tmp_path / "hard-1.yaml"),
        "report": {"params": {"oos_seconds": 3}, "missed": missed, "false_alarms": false_alarms},
    }
    assert list(causes(row).values()) == [1, 1, 2, 1, 1, 1]
