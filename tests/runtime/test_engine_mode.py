"""The shared engine's THROUGHPUT mode (several CPU streams for several cameras), its config key, and RSS."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml

from edgecam.runtime.camera_config import load_cameras_config
from edgecam.runtime.engine import SharedEngine
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from edgecam.runtime.stats import rss_bytes


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_throughput_mode_gives_the_same_results(tiny_bundle, backend):
    reference = Model(tiny_bundle, backend=backend, threads=1)
    batch = np.random.default_rng(0).random((2, 3, reference.spec.height, reference.spec.width), dtype=np.float32)
    expected = reference.infer(batch)
    model = Model(tiny_bundle, backend=backend, threads=1, mode="throughput")
    engine = SharedEngine(model, workers=1)
    futures = [engine.submit(batch) for _ in range(6)]
    for future in futures:
        np.testing.assert_allclose(future.result(timeout=30), expected, rtol=1e-5, atol=1e-5)
    info = engine.info()
    engine.close()
    assert info["mode"] == "throughput"
    if backend == "openvino":  # compiled with the THROUGHPUT hint: at least one request per stream
        assert info["streams"] >= 1 and info["workers"] >= 1
        assert "THROUGHPUT" in str(model.engine.compiled.get_property("PERFORMANCE_HINT"))


def test_an_unknown_engine_mode_is_refused(tiny_bundle):
    with pytest.raises(EdgecamError, match="unknown engine mode 'fast'"):
        Model(tiny_bundle, backend="onnxruntime", threads=1, mode="fast")


@pytest.mark.parametrize(("mode", "error"), [("throughput", None), ("latency", None), ("fast", "engine.mode")])
def test_engine_mode_in_the_cameras_yaml(tmp_path, tiny_bundle, synthetic_video, mode, error):
    cam = {"name": "c", "source": str(synthetic_video.path), "bundle": str(tiny_bundle)}
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump({"engine": {"mode": mode}, "cameras": [cam]}))
    if error:
        with pytest.raises(EdgecamError, match=error):
            load_cameras_config(path)
    else:
        assert load_cameras_config(path).mode == mode


def test_rss_bytes_is_this_process_resident_memory():
    before = rss_bytes()
    block = np.ones(64 * 2**20, np.uint8)  # 64 MB, touched
    assert before > 10 * 2**20 and rss_bytes() - before > 32 * 2**20
    del block


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process collector reads /proc")
def test_telemetry_exports_the_process_memory():
    from prometheus_client.parser import text_string_to_metric_families

    from edgecam.runtime.telemetry import Telemetry

    families = {f.name: f for f in text_string_to_metric_families(Telemetry().exposition().decode())}
    (sample,) = families["edgecam_process_resident_memory_bytes"].samples
    assert sample.value > 10 * 2**20 and sample.labels.get("device"), "resident memory, labelled with the device"
