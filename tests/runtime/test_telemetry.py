"""Prometheus metrics a fleet can aggregate: latency histograms, events by type, a device label on every sample.

The text is read back with prometheus-client's own parser, as Prometheus would read /metrics.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edgecam.runtime.camera_config import load_cameras_config  # noqa: E402
from edgecam.runtime.cameras import MultiCameraRunner  # noqa: E402
from edgecam.runtime.stats import LATENCY_BUCKETS, LatencyHistogram, StageTimes  # noqa: E402
from edgecam.runtime.telemetry import Telemetry  # noqa: E402
from tests.runtime.detect_fixtures import build_tiny_detect_bundle  # noqa: E402
from tests.runtime.test_cameras import N_FRAMES, WHOLE_FRAME, MemorySink, write_config, write_video  # noqa: E402


@pytest.fixture(scope="module")
def detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_detect_bundle(tmp_path_factory.mktemp("detect") / "tiny")


def parse(text: str) -> list:
    return list(text_string_to_metric_families(text))


def value(families: list, name: str, **labels: str) -> float:
    """The one sample `name` whose labels include `labels`."""
    found = [s.value for f in families for s in f.samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def histogram_series(families: list) -> dict[tuple[str, tuple], list[tuple[float, float]]]:
    """{(family, labels without le): [(le, cumulative count), ...] in exposition order} of every histogram."""
    series: dict[tuple[str, tuple], list[tuple[float, float]]] = {}
    for family in families:
        if family.type != "histogram":
            continue
        for s in family.samples:
            if s.name.endswith("_bucket"):
                key = (family.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")))
                series.setdefault(key, []).append((float(s.labels["le"]), s.value))
    return series


def test_a_run_exports_histograms_events_and_the_device_label(tmp_path, detect_bundle):
    """One camera on a 12-frame video whose detections enter a zone: the counts must match what the run did."""
    write_video(tmp_path / "door.mp4", "red")
    zone = {"zones": [{"name": "all", "polygon": WHOLE_FRAME}], "cooldown_seconds": 0, "min_track_hits": 2}
    cam = {"name": "door", "source": "door.mp4", "bundle": str(detect_bundle), "scenario": "security"}
    cam["scenario_config"] = zone
    config = write_config(tmp_path, [cam], http={"port": 0}, device={"id": "box1"})
    sink = MemorySink()
    runner = MultiCameraRunner(load_cameras_config(config), sinks=[sink])
    summary = runner.run(duration=60)
    (camera,) = summary.cameras
    assert camera["frames"] == N_FRAMES and camera["error"] is None
    families = parse(runner.telemetry.exposition().decode())

    assert all(s.labels.get("device") == "box1" for f in families for s in f.samples)  # process metrics too
    assert not any(s.name.endswith("_created") for f in families for s in f.samples)  # no series per counter twice
    series = histogram_series(families)
    assert series, "no histogram exported"
    for (name, labels), buckets in series.items():
        les = [le for le, _ in buckets]
        counts = [n for _, n in buckets]
        assert les == sorted(les) and les[-1] == math.inf, (name, les)
        assert counts == sorted(counts), f"{name}{labels}: buckets not cumulative: {counts}"
        count = value(families, f"{name}_count", **dict(labels))
        assert counts[-1] == count  # +Inf holds every observation

    frames = value(families, "edgecam_frames_out_total", camera="door")
    assert frames == N_FRAMES
    assert value(families, "edgecam_frame_latency_seconds_count", camera="door") == frames  # one per processed frame
    assert value(families, "edgecam_stage_latency_seconds_count", camera="door", stage="infer") == frames
    assert value(families, "edgecam_stage_latency_seconds_sum", camera="door", stage="infer") > 0

    emitted: dict[str, int] = {}
    for _, event in sink.events:
        emitted[event.kind] = emitted.get(event.kind, 0) + 1
    assert emitted.get("zone_enter", 0) >= 1
    exported = {
        s.labels["type"]: s.value
        for f in families
        if f.name == "edgecam_events"
        for s in f.samples
        if s.name == "edgecam_events_total"
    }
    assert exported == emitted


def _device_text(device: str, infer_seconds: list[float], frame_seconds: list[float]) -> str:
    """The /metrics text of one device whose camera `cam` timed these inferences and frames."""
    times, frames = StageTimes(), LatencyHistogram()
    for s in infer_seconds:
        times.add("infer", s)
    for s in frame_seconds:
        frames.observe(s)
    telemetry = Telemetry(device=device)
    histograms = {"stages": times.histograms(), "frame_latency": frames.snapshot()}
    telemetry.record("cam", {"frames_out": len(frame_seconds)}, histograms)
    return telemetry.exposition().decode()


def test_two_devices_add_up_bucket_by_bucket():
    """What `sum by (le) (edgecam_stage_latency_seconds_bucket)` does across devices, checked against the raw
    observations: a percentile gauge per device could not be combined like this."""
    a = [0.0004, 0.003, 0.02, 0.02, 0.3, 1.5]
    b = [0.001, 0.0011, 0.04, 0.9, 2.0, 9.0]  # 0.001 and 2.0 sit exactly on bounds; 9 s is beyond the last
    texts = [_device_text("store1", a, a[:4]), _device_text("store2", b, b[:3])]
    total: dict[float, float] = {}
    count = 0.0
    devices = set()
    for text in texts:
        families = parse(text)
        for family in families:
            for s in family.samples:
                if s.name == "edgecam_stage_latency_seconds_bucket" and s.labels["stage"] == "infer":
                    le = float(s.labels["le"])
                    total[le] = total.get(le, 0.0) + s.value
                    devices.add(s.labels["device"])
        count += value(families, "edgecam_stage_latency_seconds_count", stage="infer")
    assert devices == {"store1", "store2"}
    observed = a + b
    assert count == len(observed) == total[math.inf]
    for le in (*LATENCY_BUCKETS, math.inf):
        assert total[le] == sum(1 for s in observed if s <= le), le  # Prometheus' `le`: less than or equal


def test_a_histogram_keeps_le_semantics_and_constant_memory():
    h = LatencyHistogram()
    for s in (LATENCY_BUCKETS[0], LATENCY_BUCKETS[-1], LATENCY_BUCKETS[-1] * 2, 0.0):
        h.observe(s)
    cumulative = dict(h.snapshot().cumulative())
    assert cumulative[LATENCY_BUCKETS[0]] == 2  # 0 and the first bound itself
    assert cumulative[LATENCY_BUCKETS[-1]] == 3 and cumulative[math.inf] == 4 == h.snapshot().count
    for _ in range(10_000):
        h.observe(0.01)
    assert len(h.snapshot().counts) == len(LATENCY_BUCKETS) + 1  # counts, never samples


def test_the_metric_names_the_docs_use_exist(tmp_path):
    """examples/prometheus.yml and README's Fleet section query these names: a rename must update them."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[2]
    example = (root / "examples" / "prometheus.yml").read_text()
    job = yaml.safe_load(example)["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"]
    text = _device_text("d", [0.01], [0.02])
    telemetry = Telemetry(device="d")
    telemetry.record("cam", {"frames_out": 1, "online": True, "events": {"out_of_stock": 1}})
    families = parse(text + telemetry.exposition().decode())
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    readme = (root / "README.md").read_text()
    fleet = readme[readme.index("## Fleet") : readme.index("## Dataset formats")]
    mentioned = set(re.findall(r"edgecam_[a-z0-9_]+", example + fleet))
    gone = {"edgecam_stage_latency_p50_seconds"}  # named as removed
    assert mentioned - gone, "no metric names found"
    assert mentioned - gone <= exported, (mentioned - gone) - exported
