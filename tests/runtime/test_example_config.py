"""`edgecam run --config examples/cameras.yaml` on tiny synthesized 720p videos with tiny bundles.

The example file is used as shipped (zones, line, slots, sinks); only the paths it names (the bundles and videos
that `make demo` and the README steps build) and the HTTP port are replaced by test ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from edgecam.bench.stream_server import free_port
from edgecam.cli import main
from edgecam.runtime.bundle import load_bundle, write_manifest
from edgecam.runtime.camera_config import load_cameras_config
from edgecam.runtime.cameras import MultiCameraRunner
from edgecam.runtime.scenarios.retail import STATES
from tests.runtime.detect_fixtures import build_tiny_detect_bundle

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cameras.yaml"
FPS, SECONDS = 10, 1.2


def renamed(bundle: Path, out: Path, class_names: tuple[str, ...]) -> Path:
    """A copy of a tiny bundle whose classes carry the names the example's scenarios use."""
    shutil.copytree(bundle, out)
    manifest = json.loads((out / "edgecam.json").read_text())
    write_manifest(out, {**manifest, "class_names": list(class_names)})
    assert load_bundle(out).class_names == class_names
    return out


@pytest.fixture
def example(tmp_path: Path, tiny_bundle: Path) -> Path:
    train_synth = pytest.importorskip("edgecam.train.synth")
    # The scenes the example is drawn for: seed 7 = `make demo`'s shelf, seed 3 = `edgecam data video` street.
    shelf = train_synth.make_shelf_video(tmp_path / "shelf.mp4", seconds=SECONDS, fps=FPS, seed=7)
    street = train_synth.make_security_video(tmp_path / "street.mp4", seconds=SECONDS, fps=FPS, seed=3)
    detector = build_tiny_detect_bundle(tmp_path / "tiny-detector")  # a constant person box and car box
    paths = {
        "../runs/examples/street.mp4": street.path,
        "../runs/examples/street-detector": renamed(detector, tmp_path / "street-detector", ("person", "vehicle")),
        "../runs/demo/shelf.mp4": shelf.path,
        "../runs/demo/bundle": renamed(tiny_bundle, tmp_path / "slots", ("empty", "low", "stocked")),
    }
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["http"]["port"] = free_port()
    for cam in raw["cameras"]:
        cam["source"], cam["bundle"] = str(paths[cam["source"]]), str(paths[cam["bundle"]])
        cam["sinks"] = {k: str(tmp_path / Path(v).relative_to("../runs")) for k, v in cam["sinks"].items()}
    config = tmp_path / "cameras.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def test_the_example_config_runs_the_security_and_retail_cameras(example: Path, tmp_path: Path, capsys):
    assert main(["run", "--config", str(example), "--duration", "60", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cams = {c["camera"]: c for c in out["cameras"]}
    n = round(SECONDS * FPS)
    assert set(cams) == {"street", "shelf"} and all(c["frames"] == n and c["error"] is None for c in cams.values())
    assert cams["street"]["events"].get("zone_enter", 0) >= 1  # the constant person stands in the frontage zone
    street = [json.loads(line) for line in (tmp_path / "examples/out/street.jsonl").read_text().splitlines()]
    assert len(street) == n and any(r.get("events") for r in street)
    shelf = [json.loads(line) for line in (tmp_path / "examples/out/shelf.jsonl").read_text().splitlines()]
    assert len(shelf) == n and all(len(r["results"]) == 20 for r in shelf)  # one result per example slot
    assert {res["label"] for r in shelf for res in r["results"]} <= set(STATES)


def test_the_example_cameras_publish_their_scenario_state(example: Path):
    runner = MultiCameraRunner(load_cameras_config(example))
    summary = runner.run(duration=60)
    assert not summary.interrupted and all(c["error"] is None for c in summary.cameras)
    shelf = runner.registry.camera("shelf").snapshot()["scenario"]
    assert shelf["scenario"] == "retail" and len(shelf["slots"]) == 20
    slots = shelf["slots"].values()
    # the tiny model is untrained: most of its readings are below `min_score` and a slot without a confident one
    # (or hidden by the shopper the whole time) has no state yet
    assert all(slot["state"] in (*STATES, None) for slot in slots) and any(slot["state"] in STATES for slot in slots)
    street = runner.registry.camera("street").snapshot()
    assert street["scenario"]["scenario"] == "security"
    assert any(e["kind"] == "zone_enter" for e in street["events"])
