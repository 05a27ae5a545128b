"""Every backend's async `submit` agrees with its `infer`; the shared engine and per-camera views use only the
Backend interface (a fake backend registered here runs through them)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecam.runtime import backends
from edgecam.runtime.backends import backend_names, create_backend
from edgecam.runtime.backends.base import Backend
from edgecam.runtime.bundle import load_bundle
from edgecam.runtime.engine import SharedEngine
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.model import Model
from edgecam.runtime.types import Frame
from tests.runtime.conftest import solid
from tests.runtime.detect_fixtures import build_tiny_detect_bundle


@pytest.fixture(scope="module")
def detect_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_detect_bundle(tmp_path_factory.mktemp("detect") / "tiny")


def loaded(bundle_path: Path, name: str, variant: str = "onnx-fp32", mode: str = "latency") -> Backend:
    bundle = load_bundle(bundle_path)
    backend = create_backend(name)
    backend.load(bundle.path_of(bundle.variant(variant)), threads=1, mode=mode)
    return backend


def random_batches(bundle_path: Path, n: int, seed: int = 0) -> list[np.ndarray]:
    """Batches of 1..3 random images: the tiny models' outputs depend on their input."""
    spec = load_bundle(bundle_path).preprocess
    rng = np.random.default_rng(seed)
    return [rng.random((int(rng.integers(1, 4)), 3, spec.height, spec.width), dtype=np.float32) for _ in range(n)]


@pytest.mark.parametrize("name", backend_names())
@pytest.mark.parametrize("which", ["classify", "detect"])
def test_submit_gives_what_infer_gives(tiny_bundle, detect_bundle, name, which):
    path = tiny_bundle if which == "classify" else detect_bundle
    backend = loaded(path, name)
    inputs = random_batches(path, 6)
    expected = [[o.copy() for o in backend.infer(b)] for b in inputs]
    assert backend.open_async(2) >= 1
    futures = [backend.submit(b) for b in inputs]
    for future, want in zip(futures, expected, strict=True):
        got = future.result(timeout=30)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    backend.wait_all()
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.submit(inputs[0]).result(timeout=10)


@pytest.mark.parametrize("name", backend_names())
def test_infer_outputs_stay_valid_after_the_next_call(tiny_bundle, name):
    backend = loaded(tiny_bundle, name)
    a, b = random_batches(tiny_bundle, 2, seed=3)
    a, b = a[:1], b[:1]  # the same shape, so an engine would reuse its output buffer
    first = backend.infer(a)[0]
    kept = first.copy()
    backend.infer(b)
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize("name", backend_names())
def test_concurrent_submits_return_each_caller_its_own_result(tiny_bundle, name):
    backend = loaded(tiny_bundle, name)
    backend.open_async(3)
    inputs = random_batches(tiny_bundle, 24, seed=1)
    expected = [backend.infer(b)[0].copy() for b in inputs]
    got: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def caller(k: int) -> None:
        try:
            for i in range(k, len(inputs), 4):  # each waits for its own result before the next submit
                got[i] = backend.submit(inputs[i]).result(timeout=30)[0]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    backend.close()
    assert not errors and sorted(got) == list(range(len(inputs)))
    for i, want in enumerate(expected):
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "parallel"), [("onnxruntime", 4), ("opencv", 1), ("openvino", 4)])
def test_max_parallel_follows_thread_safety(tiny_bundle, name, parallel):
    backend = loaded(tiny_bundle, name)
    assert backend.open_async(4) == parallel == backend.max_parallel
    backend.close()
    assert backend.max_parallel == 0


def test_openvino_throughput_mode_runs_at_least_the_optimal_number_of_requests(tiny_bundle):
    backend = loaded(tiny_bundle, "openvino", "openvino-fp32", mode="throughput")
    info = backend.info()
    assert info["mode"] == "throughput" and info["streams"] >= 1
    assert backend.open_async(1) >= max(1, info["optimal_requests"])
    backend.close()


def test_openvino_streams_option(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    backend = create_backend("openvino")
    backend.load(bundle.path_of(bundle.variant("openvino-fp32")), threads=2, mode="throughput", streams=2)
    assert backend.info()["streams"] == 2


def test_openvino_wrong_shape_submit_is_refused_and_the_queue_keeps_working(tiny_bundle):
    backend = loaded(tiny_bundle, "openvino", "openvino-fp32")
    requests = backend.open_async(2)
    good = random_batches(tiny_bundle, 3 * requests, seed=2)
    for _ in range(2 * requests):  # more failures than requests: none may be left broken
        with pytest.raises(EdgecamError, match="does not fit the model input"):
            backend.submit(np.zeros((1, 3, 7, 7), np.float32)).result(timeout=5)
    futures = [backend.submit(b) for b in good]
    for future, batch in zip(futures, good, strict=True):
        np.testing.assert_allclose(future.result(timeout=10)[0], backend.infer(batch)[0], rtol=1e-5, atol=1e-5)
    backend.close()


@pytest.mark.parametrize("name", backend_names())
def test_bind_runs_the_batch(tiny_bundle, name):
    backend = loaded(tiny_bundle, name)
    (batch,) = random_batches(tiny_bundle, 1)
    call = backend.bind(batch)
    for _ in range(3):
        call()
    np.testing.assert_allclose(backend.infer(batch)[0], loaded(tiny_bundle, "onnxruntime").infer(batch)[0], atol=1e-5)


# ---------------------------------------------------------------- a fake backend through the shared engine
class FakeBackend(Backend):
    """Doubles the per-image channel means (the tiny classifier's input -> 3 logits); counts calls in flight."""

    name = "fake-test"
    formats = ("onnx",)

    def load(self, path: Path, threads: int | None = None, precision: str = "fp32", device: str = "CPU",
             mode: str = "latency", streams: int | None = None) -> None:  # fmt: skip
        self.path, self.running, self.most, self.calls = path, 0, 0, 0
        self.lock = threading.Lock()

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        time.sleep(0.02)  # long enough for calls from several threads to overlap when the pool lets them
        with self.lock:
            self.running -= 1
        return [2.0 * batch.mean(axis=(2, 3))]


class ThreadSafeFake(FakeBackend):
    name = "fake-test-threadsafe"
    thread_safe = True


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    backends._discover()
    for cls in (FakeBackend, ThreadSafeFake):
        monkeypatch.setitem(backends._REGISTRY, cls.name, cls)


@pytest.mark.parametrize(("name", "most"), [("fake-test", 1), ("fake-test-threadsafe", 4)])
def test_a_registered_fake_backend_runs_through_the_shared_engine(tiny_bundle, fakes, name, most):
    model = Model(tiny_bundle, backend=name, threads=1)
    engine = SharedEngine(model, workers=4)
    assert engine.kind == f"{name}-{'direct' if most > 1 else 'pool'}" and engine.workers == most
    inputs = random_batches(tiny_bundle, 8, seed=4)
    futures = [engine.submit(b) for b in inputs]
    for future, batch in zip(futures, inputs, strict=True):
        np.testing.assert_allclose(future.result(timeout=10), 2.0 * batch.mean(axis=(2, 3)), rtol=1e-6)
    assert model.engine.most == most  # one call at a time unless the backend says infer is thread-safe
    info = engine.info()
    assert info["backend"] == name and info["workers"] == most and info["shared"] == engine.kind
    engine.close()
    assert engine.queue_depth == 0


def test_direct_calls_of_a_thread_safe_backend_run_on_the_callers_threads_at_most_workers_at_once(tiny_bundle, fakes):
    model = Model(tiny_bundle, backend="fake-test-threadsafe", threads=1)
    loading = model.engine.calls  # the output check at load
    engine = SharedEngine(model, workers=2)
    inputs = random_batches(tiny_bundle, 8, seed=5)
    results: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, engine.infer(inputs[i]))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for i, batch in enumerate(inputs):
        np.testing.assert_allclose(results[i], 2.0 * batch.mean(axis=(2, 3)), rtol=1e-6)
    assert model.engine.most == 2 and model.engine.calls - loading == 8  # bounded by workers, every caller served
    assert engine.queue_depth == 0
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.infer(inputs[0])


def test_the_shared_engine_uses_a_backends_own_submit(tiny_bundle, fakes, monkeypatch):
    class OwnQueue(FakeBackend):
        name = "fake-test-own-queue"
        async_kind = "own"

        def open_async(self, requests: int = 1) -> int:
            self.submitted: list[np.ndarray] = []
            return 7

        def submit(self, batch: np.ndarray) -> Any:
            from concurrent.futures import Future

            self.submitted.append(batch)
            future: Future = Future()
            future.set_result([np.full((len(batch), 3), 5.0, np.float32)])
            return future

    monkeypatch.setitem(backends._REGISTRY, OwnQueue.name, OwnQueue)
    model = Model(tiny_bundle, backend=OwnQueue.name, threads=1)
    assert model.engine.calls == 1  # the output check at load
    engine = SharedEngine(model, workers=2)
    assert engine.kind == "fake-test-own-queue-own" and engine.workers == 7
    camera = engine.view()
    assert [r.label for r in camera.classify_frame(Frame(solid("red")))] == ["blue"]  # the fake's 5.0s: class 0
    assert len(model.engine.submitted) == 1 and model.engine.calls == 1  # the view went through submit, not infer
    engine.close()


def test_views_share_the_loaded_backend_with_their_own_timers(tiny_bundle, fakes):
    model = Model(tiny_bundle, backend="fake-test", threads=1)
    engine = SharedEngine(model, workers=1)
    a, b = engine.view(), engine.view()
    assert a.engine is b.engine is model.engine and a.bundle is model.bundle and a.variant == model.variant
    assert a.times is not b.times and a.times is not model.times
    a.classify_frame(Frame(solid("green")))
    a.classify_frame(Frame(solid("green")))
    b.classify_frame(Frame(solid("red")))
    assert a.times.summary()["infer"]["count"] == 2 and b.times.summary()["infer"]["count"] == 1
    assert "infer" not in model.times.summary()
    assert model.engine.calls == 1 + 3  # the output check at load, then the views' frames
    engine.close()


def test_a_detector_view_keeps_the_models_thresholds(detect_bundle):
    model = Model(detect_bundle, backend="onnxruntime", threads=1, conf=0.6, iou=0.3)
    view = model.view(model.infer)
    assert view.detect_settings == model.detect_settings and view.detect_settings.conf == 0.6
