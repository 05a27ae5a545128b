"""Bundle latency: every variant on every engine that runs it, at batch 1 or the batch the runtime sends."""

import json

import pytest

from edgecam.devices.benchmark import benchmark_bundle, format_rows
from edgecam.runtime.errors import EdgecamError

QUICK = dict(runs=3, warmup=1, threads=1, throughput_seconds=0.2)


@pytest.mark.parametrize("batch", [1, 5])
def test_rows_are_measured_at_the_requested_batch(exported_bundle, batch):
    rows = benchmark_bundle(exported_bundle, batch=batch, **QUICK)
    manifest = json.loads((exported_bundle / "edgecam.json").read_text())
    assert {r["variant"] for r in rows} == set(manifest["variants"]), "every variant ran at this batch"
    assert {r["backend"] for r in rows} == {"onnxruntime", "openvino"}, "both engines accept the dynamic batch"
    assert all(r["batch"] == batch and r["p50_ms"] > 0 for r in rows)
    assert all(r["throughput_fps"] > 0 for r in rows if r["backend"] == "openvino" and "fp" in r["variant"])
    assert format_rows(rows).splitlines()[1].split()[2] == str(batch)


def test_batch_must_be_positive(exported_bundle):
    with pytest.raises(EdgecamError, match="--batch 0"):
        benchmark_bundle(exported_bundle, batch=0, **QUICK)


def test_cli_benchmark_batch(exported_bundle, capsys):
    from edgecam.cli import main

    args = ["benchmark", str(exported_bundle), "--backends", "onnxruntime", "--runs", "2", "--batch", "4", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["batch"] == 4 and r["backend"] == "onnxruntime" for r in rows)


@pytest.mark.parametrize("backend, variant", [("openvino", "openvino-fp32"), ("onnxruntime", "onnx-fp32")])
def test_throughput_submits_through_the_backend_interface(exported_bundle, backend, variant):
    from edgecam.devices.benchmark import throughput, time_variant
    from edgecam.runtime.bundle import load_bundle

    bundle = load_bundle(exported_bundle)
    path, shape = bundle.path_of(bundle.variant(variant)), (2, *bundle.preprocess.input_shape)
    assert throughput(path, backend, "fp32", shape, seconds=0.2) > 0
    timed = time_variant(path, backend, "fp32", shape, runs=3, warmup=1, threads=1)
    assert timed["p50_ms"] > 0 and timed["engine"]["backend"] == backend
