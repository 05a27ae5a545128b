"""The shared engine: concurrent submits from many threads give exactly what sequential inference gives."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edgecam.runtime.engine import SharedEngine
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from edgecam.runtime.types import Frame
from tests.runtime.conftest import solid
from tests.runtime.detect_fixtures import build_tiny_detect_bundle

BACKENDS = ["openvino", "onnxruntime"]


@pytest.fixture(scope="module")
def detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_detect_bundle(tmp_path_factory.mktemp("detect") / "tiny")


def batches(model: Model, n: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Random preprocessed batches of 1..3 images (the tiny models' outputs depend on their input)."""
    rng = np.random.default_rng(seed)
    shape = (3, model.spec.height, model.spec.width)
    return [rng.random((int(rng.integers(1, 4)), *shape), dtype=np.float32) for _ in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", ["classify", "detect"])
def test_concurrent_submits_equal_sequential_inference(tiny_bundle, detect_bundle, backend, which):
    model = Model(tiny_bundle if which == "classify" else detect_bundle, backend=backend, threads=1)
    inputs = batches(model)
    expected = [model.infer(b) for b in inputs]
    engine = SharedEngine(model, workers=2)
    assert engine.kind == f"{backend}-direct"  # both engines run a camera's batch on the camera's thread
    got: list[np.ndarray | None] = [None] * len(inputs)
    direct: list[np.ndarray | None] = [None] * len(inputs)

    def camera(k: int) -> None:  # four "cameras" submitting interleaved, each waiting for its own results
        futures = [(i, engine.submit(inputs[i])) for i in range(k, len(inputs), 4)]
        for i, future in futures:
            got[i] = future.result(timeout=30)
        for i in range(k, len(inputs), 4):  # and the direct calls, from the same threads at once
            direct[i] = engine.infer(inputs[i])

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    engine.close()
    for out, again, ref in zip(got, direct, expected, strict=True):
        assert out is not None and again is not None and out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(again, ref, rtol=1e-5, atol=1e-5)
    assert engine.queue_depth == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_views_run_the_whole_model_through_the_engine(tiny_bundle, detect_bundle, backend):
    classifier = SharedEngine(Model(tiny_bundle, backend=backend, threads=1))
    detector = SharedEngine(Model(detect_bundle, backend=backend, threads=1))
    frame = Frame(solid("green", 48, 64))
    a, b = classifier.view(), classifier.view()
    assert [r.label for r in a.classify_frame(frame)] == ["green"]
    assert a.times is not b.times and a.times is not classifier.model.times  # each camera times its own stages
    assert a.times.summary()["infer"]["count"] == 1 and "infer" not in b.times.summary()
    expected = detector.model.detect_frame(frame)
    got = detector.view().detect_frame(frame)
    np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=1e-4)
    assert got.class_ids.tolist() == expected.class_ids.tolist()
    classifier.close()
    detector.close()


def test_queue_depth_counts_batches_waiting_and_running(tiny_bundle):
    model = Model(tiny_bundle, backend="onnxruntime", threads=1)
    gate = threading.Event()
    real = model.engine.infer
    model.engine.infer = lambda batch: (gate.wait(10), real(batch))[1]  # a slow engine the test controls
    engine = SharedEngine(model, workers=2)
    futures = [engine.submit(b) for b in batches(model, 5)]
    assert engine.queue_depth == 5  # two running, three waiting for a worker
    gate.set()
    for f in futures:
        f.result(timeout=10)
    engine.close()
    assert engine.queue_depth == 0


def test_an_engine_error_reaches_the_caller_and_the_engine_keeps_working(tiny_bundle):
    model = Model(tiny_bundle, backend="onnxruntime", threads=1)
    engine = SharedEngine(model, workers=2)
    bad = np.zeros((1, 3, 7, 7), np.float32)  # the wrong input size
    with pytest.raises(Exception, match="(?i)dimension|shape|invalid"):
        engine.submit(bad).result(timeout=10)
    good = batches(model, 1)[0]
    np.testing.assert_allclose(engine.infer(good), model.infer(good), atol=1e-6)
    assert engine.queue_depth == 0
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(good)


def test_openvino_errors_reach_the_caller(tiny_bundle):
    model = Model(tiny_bundle, backend="openvino", threads=1)
    engine = SharedEngine(model)
    for _ in range(2 * engine.workers):  # more refusals than infer requests: the queue must stay usable
        with pytest.raises(EdgecamError, match="does not fit the model input"):
            engine.submit(np.zeros((1, 3, 7, 7), np.float32)).result(timeout=10)
    assert engine.queue_depth == 0
    good = batches(model, 1)[0]
    np.testing.assert_allclose(engine.infer(good, timeout=10), model.infer(good), atol=1e-6)
    engine.close()


def test_backends_that_are_not_thread_safe_get_one_worker(tiny_bundle):
    model = Model(tiny_bundle, backend="opencv", threads=1)
    engine = SharedEngine(model, workers=4)
    assert engine.kind == "opencv-pool" and engine.workers == model.engine.max_parallel == 1
    assert engine.info()["workers"] == 1
    engine.close()
