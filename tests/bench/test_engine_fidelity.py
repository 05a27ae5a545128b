"""The fidelity check runs benchmark_app and edgecam's timing on the same IR and reports both medians."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from edgecam.bench.engine_fidelity import engine_fidelity, fidelity_table, parse_median
from edgecam.runtime.bundle import load_bundle
from tests.runtime.conftest import build_tiny_bundle


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("fidelity") / "tiny")


def test_parse_median_in_us_and_ms():
    assert parse_median("[ INFO ] Latency:\n[ INFO ]    Median:        396.11 us\n") == pytest.approx(0.39611)
    assert parse_median("[ INFO ]    Median:        0.53 ms\n") == pytest.approx(0.53)
    assert parse_median("no report") is None


@pytest.mark.parametrize("static", [True, False])
def test_engine_fidelity_on_a_tiny_ir(tiny_bundle, static):
    bundle = load_bundle(tiny_bundle)
    ir = bundle.path_of(bundle.variant("openvino-fp32"))
    row = engine_fidelity(ir, "fp32", (1, 3, 32, 32), rounds=1, niter=50, threads=1, label="tiny", static=static)
    assert row["edgecam_ms"] > 0 and row["benchmark_app_ms"] > 0
    # The ratio comes from the unrounded medians: a tiny IR's few-microsecond median loses digits when rounded.
    ours, app = (statistics.median(row["rounds"][k]) for k in ("edgecam_ms", "benchmark_app_ms"))
    assert row["ratio"] == pytest.approx(ours / app, abs=1e-3)
    table = fidelity_table([row]).splitlines()
    assert len(table) == 3 and table[2].startswith("| tiny | fp32 | 1x3x32x32 |")
