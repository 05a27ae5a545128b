"""The security part of `edgecam bench-scenarios` on one small hard street video: the truth detector is what the
module doc says, every row is the scorer's, the section's tables add up, and a detector bundle runs the real path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecam.bench import security_accuracy as sa
from edgecam.bench.real import read_section, write_section
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scoring import score_events

pytest.importorskip("motmetrics")
SIZE, FPS = (320, 180), 5


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    pytest.importorskip("edgecam.train.synth")
    root = tmp_path_factory.mktemp("security")
    logged: list[str] = []
    out = sa.run_all(root / "work", tuning=(), held_out=(7,), fps=FPS, size=SIZE, log=logged.append)
    assert [m.split(":")[0] for m in logged] == [
        "1/2 held_out seed 7 normal (truth)",
        "2/2 held_out seed 7 hard (truth)",
    ]
    return root, out


def test_truth_detections_follow_visibility_and_stay_seeded():
    truth = {
        "size": [320, 180],
        "boxes": [[[10, 10, 50, 100, "person"], [100, 10, 140, 100, "person"], [200, 50, 300, 120, "vehicle"]]],
        "visible": [[1.0, 0.5, 0.1]],
    }
    runs = [sa.truth_detections(truth, 0, np.random.default_rng(s)) for s in range(200)]
    boxes = {x: np.array(b[:4], float) for b in truth["boxes"][0] for x in [b[0]]}

    def found(d, x: int) -> list[float]:
        """Scores of the boxes near the truth box starting at x (a stray box is nowhere near all four sides)."""
        return [float(s) for b, s in zip(d.xyxy, d.scores, strict=True) if np.abs(b - boxes[x]).max() < 20]

    seen = [found(d, 10) for d in runs]
    assert 0.85 < np.mean([bool(s) for s in seen]) < 1.0  # missed now and then (MISS_RATE)
    assert all(0.65 <= s <= 0.95 for x in seen for s in x)  # fully visible: a confident box
    assert all(0.15 <= s <= 0.45 for d in runs for s in found(d, 100))  # half hidden: a low-score box, stage 2
    assert not any(found(d, 200) for d in runs)  # 90 % hidden: never found
    a, b = (sa.truth_detections(truth, 0, np.random.default_rng(3)) for _ in range(2))
    assert np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.scores, b.scores)


def test_every_row_is_what_score_events_says(results):
    root, out = results
    assert [(r["seed"], r["variant"], r["mode"]) for r in out["held_out"]] == [
        (7, "normal", "truth"),
        (7, "hard", "truth"),
    ]
    saved = json.loads((root / "work" / "security.json").read_text())
    assert saved["held_out"][1]["report"]["all"] == out["held_out"][1]["report"]["all"]
    for row in out["held_out"]:
        stem = Path(row["config"]).with_suffix("")
        again = score_events(Path(f"{stem}.jsonl"), Path(str(stem).removesuffix("-truth") + ".json"), row["config"])
        assert again["all"] == row["report"]["all"] and again["counts"] == row["report"]["counts"]
    hard = out["held_out"][1]
    assert hard["report"]["counts"]["true"] >= 6 and hard["tracks"]["truth_ids"] >= 8  # the script's people
    assert hard["report"]["params"]["cooldowns"] == {"zone entrance": 0.0, "line gate": 0.0}


def test_section_tables_add_up(results, tmp_path):
    _, out = results
    lines = sa.section_lines(out, "edgecam bench-scenarios --scenario security --work W --out B.md")
    text = "\n".join(lines)
    assert lines[0] == sa.SECTION and "no trained street detector" in text
    rows = out["held_out"]
    p = sa.pooled(rows)
    assert p["crossings"] == sum(r["report"]["counts"]["true"] for r in rows)
    assert p["zone_enter"]["tp"] == sum(
        next(x for x in r["report"]["rows"] if x["kind"] == "zone_enter")["tp"] for r in rows
    )
    assert p["id_switches"] == sum(r["tracks"]["id_switches"] for r in rows)
    per_seed = [ln for ln in lines if ln.startswith("| 7 | ")]
    assert len(per_seed) == 2 and f"| {rows[1]['tracks']['id_switches']} |" in per_seed[1]
    met = [t for t in sa.targets(rows)]
    assert [m[2] for m in met] == [
        p["count_error"] <= 0.05,
        min(p["zone_enter"]["precision"], p["zone_enter"]["recall"]) >= 0.95,
        p["loitering"]["precision"] == 1.0 and p["loitering"]["recall"] == 1.0,
        p["idf1"] >= 0.8,
    ]
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    write_section(bench, lines)
    assert "kept" in bench.read_text() and read_section(bench, sa.SECTION) == lines[:-1]  # its blank end trimmed


def test_a_detector_bundle_runs_the_runtime_path(tmp_path, monkeypatch):
    """The `detector` mode runs the camera as `edgecam run` would (a constant tiny detector: the numbers mean
    nothing, the path and the scoring of its JSONL do)."""
    pytest.importorskip("openvino")
    from tests.runtime import detect_fixtures

    monkeypatch.setattr(detect_fixtures, "CLASS_NAMES", ("person", "vehicle"))
    bundle = detect_fixtures.build_tiny_detect_bundle(tmp_path / "det")
    rows = sa.run_video(tmp_path / "work", 7, "normal", bundle, fps=FPS, size=SIZE)
    assert [r["mode"] for r in rows] == ["truth", "detector"]
    lines = (tmp_path / "work" / "street-normal-7-detector.jsonl").read_text().splitlines()
    assert len(lines) == sa.VARIANTS["normal"] * FPS
    assert rows[1]["tracks"]["frames"] == len(lines) and "counts" in rows[1]["report"]


def test_bad_detector_and_overlapping_seeds(tmp_path):
    with pytest.raises(EdgecamError, match="no detector bundle"):
        sa.run_all(tmp_path, detector=tmp_path / "nothing")
    with pytest.raises(EdgecamError, match="both tuning and held out"):
        sa.run_all(tmp_path, tuning=(1, 2), held_out=(2,))


def test_cli_writes_only_the_security_section_when_asked(results, tmp_path, monkeypatch, capsys):
    from edgecam.bench import scenario_accuracy
    from edgecam.cli import main

    _, out = results
    calls = []
    monkeypatch.setattr(sa, "run_all", lambda work, detector: calls.append((work, detector)) or out)
    monkeypatch.setattr(scenario_accuracy, "run_all", lambda *a, **k: pytest.fail("retail must not run"))
    bench = tmp_path / "B.md"
    assert main(["bench-scenarios", "--scenario", "security", "--work", "W", "--out", str(bench)]) == 0
    assert calls == [("W", None)] and "security scenario-accuracy section" in capsys.readouterr().out
    section = read_section(bench, sa.SECTION)
    assert "`edgecam bench-scenarios --scenario security --work W --out " in section[2]
