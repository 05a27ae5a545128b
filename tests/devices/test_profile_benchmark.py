"""`edgecam benchmark BUNDLE --device PROFILE`: the profile's variants measured here (or estimated, said so), with
accuracy and budget verdicts, stored beside the bundle without breaking its checksums or seal."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from edgecam.cli import main
from edgecam.devices.profile_bench import benchmark_profile, host_name, store
from edgecam.devices.profiles import PROFILE_DIR, load_profile
from edgecam.runtime.bundle import MANIFEST, load_bundle
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.verify import verify_bundle

QUICK = dict(runs=5, warmup=1, throughput_seconds=0.2)
CLI_QUICK = ["--runs", "5", "--seconds", "0.2"]


@pytest.fixture
def bundle(exported_bundle: Path, tmp_path: Path) -> Path:
    """A private copy: the benchmark writes into the bundle's folder."""
    return Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))


def _profile(tmp_path: Path, name: str, **changes) -> Path:
    """A user's profile file, x86-generic with `changes` (one name per file: profiles are read once per path)."""
    data = yaml.safe_load((PROFILE_DIR / "x86-generic.yaml").read_text())
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _here(name: str) -> None:
    if not load_profile(name).runs_here()[0]:
        pytest.skip(f"{name} does not run on this host")


def test_profile_rows_measure_every_variant_it_runs(bundle):
    _here("x86-generic")
    result = benchmark_profile(bundle, "x86-generic", **QUICK)
    manifest = json.loads((bundle / MANIFEST).read_text())
    precisions = load_profile("x86-generic").precisions
    runnable = {n for n, v in manifest["variants"].items() if v["precision"] in precisions}
    assert {r["variant"] for r in result["rows"]} == runnable, "every variant in a profile precision, no other"
    assert not result["estimated"] and result["basis"] == "measured on this host"
    engines = {n: v["engine"] for n, v in manifest["variants"].items()}  # what export ran each variant on
    assert engines["onnx-fp32"]["device"] == "CPUExecutionProvider" and engines["openvino-fp32"]["device"] == "CPU"
    for r in result["rows"]:
        assert (r["backend"], r["device"], r["ran_on"]) == ("openvino", "CPU", "CPU")
        assert r["load_ms"] > 0 and r["first_inference_ms"] > 0 and r["throughput_fps"] > 0
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["peak_rss_mb"] > 20, "a Python process with an engine loaded"
        assert r["accuracy"] == manifest["variants"][r["variant"]]["metrics"]["top1"]
        assert r["meets_latency"] == (r["p95_ms"] <= result["budget"]["latency_ms"])
        assert r["meets_budget"] == (r["meets_latency"] and r["meets_memory"])


def test_a_profile_that_cannot_run_here_is_estimated_and_says_so(bundle):
    pi = load_profile("raspberry-pi-4")
    if pi.runs_here()[0]:
        pytest.skip("this host is a Raspberry Pi class aarch64 box")
    result = benchmark_profile(bundle, pi, **QUICK)
    assert result["estimated"] and f"× {pi.speed_factor:.1f}" in result["basis"] and "aarch64" in result["basis"]
    assert "could not run on this host" in result["note"]
    for r in result["rows"]:
        assert r["estimated"] and r["backend"] == "onnxruntime" and r["format"] == "onnx"
        here = r["measured_here"]
        assert r["p50_ms"] == pytest.approx(here["p50_ms"] * pi.speed_factor, abs=1e-3)
        assert r["throughput_fps"] == pytest.approx(here["throughput_fps"] / pi.speed_factor, abs=0.1)


def test_budget_verdicts_follow_the_profile(bundle, tmp_path):
    tight = _profile(tmp_path, "tight", precisions=["fp16"], budget={"latency_ms": 0.0001, "peak_memory_mb": 64})
    loose = _profile(tmp_path, "loose", precisions=["fp16"], budget={"latency_ms": 6e4, "peak_memory_mb": 1 << 20})
    rows = benchmark_profile(bundle, tight, **QUICK)["rows"] + benchmark_profile(bundle, loose, **QUICK)["rows"]
    assert [(r["variant"], r["meets_budget"]) for r in rows] == [("openvino-fp16", False), ("openvino-fp16", True)]
    assert not (rows[0]["meets_latency"] or rows[0]["meets_memory"]), "both limits are checked"


def test_no_variant_for_the_profile_is_bad_input(bundle, tmp_path, capsys):
    only_int8 = _profile(tmp_path, "tight", precisions=["int8"])
    with pytest.raises(EdgecamError, match="no variant of this bundle runs on tight"):
        benchmark_profile(bundle, only_int8, **QUICK)
    assert main(["benchmark", str(bundle), "--device", str(only_int8)]) == 2
    assert main(["benchmark", str(bundle), "--device", "no-such.yaml"]) == 2
    assert main(["benchmark", str(bundle), "--device", "x86-generic", "--backends", "onnxruntime"]) == 2
    assert capsys.readouterr().err.count("error:") == 3


def test_benchmark_stores_beside_the_bundle_and_verify_still_passes(bundle, capsys):
    before = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert main(["benchmark", str(bundle), "--device", "x86-generic", "--json", *CLI_QUICK]) == 0
    rows = json.loads(capsys.readouterr().out)
    stored = bundle / "benchmarks" / host_name() / "x86-generic.json"
    assert json.loads(stored.read_text())["rows"] == rows
    after = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.parts[0] != "benchmarks"} == before, "no bundle file touched"
    loaded = load_bundle(bundle)  # the manifest's seal still holds
    for var in loaded.variants.values():
        loaded.check_variant_files(var)
    report = verify_bundle(bundle)
    assert report.passed and report.golden_frames > 0, report.problems
    assert main(["verify", str(bundle)]) == 0


def test_plot_on_the_workstation_and_a_note_without_matplotlib(bundle, monkeypatch):
    pytest.importorskip("matplotlib")
    result = benchmark_profile(bundle, "x86-generic", **QUICK)
    saved = store(result, bundle)
    assert saved["plot"] and Path(saved["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the base install: no matplotlib
    Path(saved["plot"]).unlink()
    saved = store(result, bundle)
    assert saved["plot"] is None and "matplotlib is not installed" in saved["plot_note"]
    assert not (bundle / "benchmarks" / host_name() / "x86-generic.png").exists()


def test_table_names_the_basis_and_the_verdicts(bundle, capsys):
    assert main(["benchmark", str(bundle), "--device", "raspberry-pi-4", *CLI_QUICK]) == 0
    out = capsys.readouterr().out
    assert "raspberry-pi-4" in out and "onnx-fp32" in out and ("meets" in out or "over:" in out)
    if not load_profile("raspberry-pi-4").runs_here()[0]:
        assert "estimated from this host × 4.0: aarch64 profile" in out


def test_device_string_benchmarks_that_engine_only(bundle, capsys):
    assert main(["benchmark", str(bundle), "--device", "cpu", "--backends", "onnxruntime", "--json", *CLI_QUICK]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {(r["backend"], r["engine"]["device"]) for r in rows} == {("onnxruntime", "CPUExecutionProvider")}


def test_out_folder_and_an_unwritable_one_keeps_the_measurements(bundle, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["benchmark", str(bundle), "--device", "raspberry-pi-4", "--out", str(out), *CLI_QUICK]) == 0
    assert (out / "raspberry-pi-4.json").is_file() and not (bundle / "benchmarks").exists()
    capsys.readouterr()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["benchmark", str(bundle), "--device", "raspberry-pi-4", "--out", str(blocker / "x"), *CLI_QUICK]) == 2
    captured = capsys.readouterr()
    assert "onnx-fp32" in captured.out, "the table is printed before the error"
    assert "cannot store the results" in captured.err


def test_a_device_string_with_two_engines_is_refused(bundle, capsys):
    assert main(["benchmark", str(bundle), "--device", "GPU", "--backends", "onnxruntime,openvino"]) == 2
    assert "names a device of one engine" in capsys.readouterr().err
