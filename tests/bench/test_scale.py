"""The scale section's pieces that need no long measurement: the slow-model backend, the camera sweep's verdicts and
tables, the file-mode table, and that the section replaces only itself in BENCHMARKS.md."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgecam.bench import camera_sweep, file_ideal
from edgecam.bench.real import read_section, write_section
from edgecam.bench.runtime_bench import slow_backend
from edgecam.bench.scale import SECTION
from edgecam.runtime import backends
from edgecam.runtime.model import Model
from tests.runtime.conftest import build_tiny_bundle


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


def test_the_slow_model_is_a_registered_backend_that_sleeps_before_each_inference(tiny_bundle):
    backends._discover()
    name = slow_backend(0.05)
    try:
        model = Model(tiny_bundle, backend=name, threads=1)
        batch = np.zeros((1, 3, model.spec.height, model.spec.width), np.float32)
        start = time.perf_counter()
        model.infer(batch)
        assert time.perf_counter() - start >= 0.05
    finally:
        backends._REGISTRY.pop(name, None)


def row(n: int, fps_min: float, age: float, errors: list[str] | None = None) -> dict:
    holds = fps_min >= camera_sweep.HOLD_FPS and age <= camera_sweep.HOLD_AGE_MS and not errors
    return {
        "cameras": n, "mode": "throughput", "fps_min": fps_min, "fps_mean": fps_min, "age_p95_ms_max": age,
        "cpu_ms_per_frame": 7.0, "cpu_cores_busy": 1.5, "stage_mean_ms": {"infer": 2.0}, "holds": holds,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "largest"),
    [
        ([row(8, 15.0, 50), row(12, 14.99, 120), row(16, 13.0, 900)], "**12 cameras**"),
        ([row(8, 15.0, 150)], "No count held"),  # a frame age over two intervals fails the count
    ],
)
def test_the_sweep_names_the_largest_count_that_holds(rows, largest):
    text = camera_sweep.markdown(rows)
    assert largest in text
    assert text.count("| yes |") == sum(r["holds"] for r in rows)


def test_file_mode_table_shows_both_ideals_and_shares():
    r = {
        "variant": "openvino-int8", "cores": 2, "sum_cpu_ms": 8.0, "ideal_fps": 250.0, "e2e_fps": 240.0,
        "share_of_ideal": 0.96, "strict_ideal_fps": 300.0, "share_of_strict_ideal": 0.8, "e2e_cpu_ms_per_frame": 8.1,
        "stage_cpu_ms": {"decode": 3.0, "preprocess": 0.5, "infer": 4.3, "postprocess": 0.2, "infer_one_thread": 2.6},
    }  # fmt: skip
    text = file_ideal.markdown(r)
    assert "250 FPS" in text and "240 FPS" in text and "96%" in text and "300 FPS (infer 2.60)" in text


def test_a_section_replaces_only_itself(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    write_section(path, [SECTION, "", "first"])
    write_section(path, [SECTION, "", "second"])
    text = path.read_text()
    assert "kept" in text and "second" in text and "first" not in text
    assert read_section(path, SECTION) == [SECTION, "", "second"]
