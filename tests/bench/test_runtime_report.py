"""The runtime benchmark's logic without timing: sample summaries, the markdown from made-up results, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecam.bench import runtime_bench, runtime_report
from edgecam.bench.runtime_report import age_summary, format_section, rss_summary
from edgecam.runtime.errors import EdgecamError


def sample(t: float, frames_out: int, p95: float, last: float, dropped: int = 0, rss: float = 100.0) -> dict:
    return {
        "t": t,
        "rss_mb": rss,
        "frames_in": frames_out + dropped,
        "frames_out": frames_out,
        "dropped": dropped,
        "queue_depth": 1,
        "frame_age_ms": {"p50": p95 / 2, "p95": p95, "last": last},
    }


def live_samples(seconds: int, fps_out: int, p95: float, drop_per_s: int = 0, rss=lambda t: 100.0) -> list[dict]:
    return [sample(t, t * fps_out, p95, p95 / 2, t * drop_per_s, rss(t)) for t in range(1, seconds + 1)]


def test_age_summary_start_is_the_first_full_window_and_end_the_last():
    samples = [sample(1, 10, 500.0, 10.0)] + [sample(t, 30 * t, 40.0 + t, 20.0) for t in range(2, 61)]
    s = age_summary(samples, window=512)
    assert s["start_t"] == 18  # 30 * 18 = 540 >= 512: the first sample whose window is full
    assert s["age_p95_start_ms"] == 58.0 and s["age_p95_end_ms"] == 100.0 and s["age_p95_worst_ms"] == 100.0
    assert s["fps_out"] == 30.0 and s["dropped"] == 0 and s["age_trend_ms_per_min"] == 0.0


def test_age_summary_counts_drops_and_fits_the_trend():
    samples = [sample(t, 15 * t, 60.0, 30.0 + t, dropped=15 * t) for t in range(1, 121)]
    s = age_summary(samples)
    assert s["dropped_share"] == 0.5 and s["fps_in"] == 30.0 and s["fps_out"] == 15.0
    assert s["age_trend_ms_per_min"] == pytest.approx(60.0)  # +1 ms per second


@pytest.mark.parametrize("samples", [[], [{"t": 1, "rss_mb": 1.0}], [{"t": 1, "frame_age_ms": {}}]])
def test_age_summary_without_ages_is_empty(samples):
    assert age_summary(samples) == {}


@pytest.mark.parametrize(
    ("points", "first_t", "growth"),
    [
        ([(t, 100.0 + t / 60) for t in range(1, 601)], 60, 9.0),  # +1 MB a minute over 10 minutes
        ([(t, 100.0) for t in range(1, 31)], 30, 0.0),  # shorter than a minute: the end stands in
        ([(0.5, 90.0), (61.0, 120.0), (125.0, 121.0)], 61.0, 1.0),
    ],
)
def test_rss_summary(points, first_t, growth):
    r = rss_summary([{"t": t, "rss_mb": m} for t, m in points])
    assert r["rss_first_t"] == first_t and r["rss_growth_mb"] == pytest.approx(growth, abs=0.05)
    assert r["rss_peak_mb"] == round(max(m for _, m in points), 1)
    assert [t for t, _ in r["rss_per_minute"]] == sorted({t for t, _ in r["rss_per_minute"]})


def camera(name: str, fps: float, frames: int, frames_in: int | None = None) -> dict:
    return {
        "camera": name,
        "frames": frames,
        "frames_in": frames if frames_in is None else frames_in,
        "fps_out": fps,
        "frame_age_ms": {"p50": 5.0, "p95": 9.0},
        "dropped": 0,
        "error": None,
    }


def fake_results(growth: float = 3.0) -> dict:
    file_run = {
        "backend": "openvino",
        "variant": "openvino-int8",
        "bare": {"fps": 200.0},
        "e2e": {"fps": 150.0, "stages": {"read": {"mean_ms": 2.0}, "infer": {"mean_ms": 5.0}}},
    }
    cams = [camera(f"cam{i}", 15.0, 900) for i in range(3)] + [camera("cam3", 12.0, 720, 900)]
    return {
        "file/openvino-int8": file_run,
        "file/onnxruntime": {**file_run, "backend": "onnxruntime", "variant": "onnx-fp32", "bare": {"fps": 160.0}},
        "live/keeps-up": {
            "delay_ms": 0.0,
            "samples": live_samples(600, 30, 40.0, rss=lambda t: 100 + growth * t / 600),
        },
        "live/slow-model": {"delay_ms": 60.0, "samples": live_samples(120, 14, 90.0, drop_per_s=16)},
        "cameras/latency": {"mode": "latency", "engines": [{"streams": 1, "workers": 2}], "cameras": cams},
    }


def test_format_section_says_met_and_not_met_with_the_numbers():
    text = "\n".join(format_section(fake_results()))
    assert "## Runtime targets" in text
    assert "openvino openvino-int8: end-to-end 150.0 FPS = 75% of bare inference 200.0 FPS" in text
    assert "onnxruntime onnx-fp32: end-to-end 150.0 FPS = 94%" in text
    lines = {ln.split(":")[0]: ln for ln in text.splitlines() if ln.startswith("- ")}
    assert lines["- File mode, openvino openvino-int8"].endswith("**not met**")
    assert lines["- File mode, onnxruntime onnx-fp32"].endswith("**met**")
    assert lines["- Live, model keeps up"].endswith("**met**")
    assert "**met**" in lines["- Live, model slower than the input (14.0 of 30.0 FPS processed)"]
    assert "growth +2.7 MB" in lines["- Memory"] and lines["- Memory"].endswith("**met**")
    assert "slowest camera 12.0 FPS" in text and text.rstrip().endswith("**not met**")
    assert "| latency | 1 / 2 | cam3 | 12.0 | 900 / 720 |" in text


def test_format_section_flags_memory_growth_and_a_short_soak():
    grown = "\n".join(format_section(fake_results(growth=25.0)))
    assert "growth +22.5 MB" in grown and "**not met**" in grown.split("- Memory")[1].splitlines()[0]
    short = fake_results()
    short["live/keeps-up"]["samples"] = short["live/keeps-up"]["samples"][:120]
    line = "\n".join(format_section(short)).split("- Memory")[1].splitlines()[0]
    assert "lasted 2.0 min, not 10" in line and line.endswith("**not met**")


@pytest.mark.parametrize(("raw", "ok"), [("10", 10.0), ("1.5", 1.5), ("0", None), ("ten", None)])
def test_soak_minutes_from_the_environment(monkeypatch, raw, ok):
    monkeypatch.setenv("SOAK_MINUTES", raw)
    if ok is None:
        with pytest.raises(EdgecamError, match="SOAK_MINUTES"):
            runtime_bench.soak_minutes()
    else:
        assert runtime_bench.soak_minutes() == ok


def test_measure_reuses_cached_results_unless_forced(monkeypatch, tmp_path: Path):
    calls: list[list[str]] = []

    def fake_run(args: list[str], timeout: float) -> dict:
        calls.append(args)
        return {"scenario": args[0]}

    monkeypatch.setattr(runtime_bench, "run_scenario", fake_run)
    monkeypatch.setattr(runtime_bench, "prepare_videos", lambda folder: {k: folder / k for k in runtime_bench.VIDEOS})
    first = runtime_bench.measure(tmp_path, Path("bundle"), soak=1.0, force=False)
    n = len(calls)
    assert (
        n == len(first) and json.loads((tmp_path / "runtime-bench" / "results.json").read_text()).keys() == first.keys()
    )
    assert runtime_bench.measure(tmp_path, Path("bundle"), soak=1.0, force=False) == first and len(calls) == n
    runtime_bench.measure(tmp_path, Path("bundle"), soak=2.0, force=False)  # a longer soak redoes that run only
    assert calls[n:] == [[*calls[3][:5], "120.0", "0"]]
    runtime_bench.measure(tmp_path, Path("bundle"), soak=2.0, force=True)
    assert len(calls) == 2 * n + 1


def test_runtime_section_formats_what_measure_returns(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(runtime_report, "measure", lambda work, bundle: fake_results())
    assert runtime_report.runtime_section(tmp_path, tmp_path / "bundle")[0] == "## Runtime targets"


def test_a_failed_scenario_is_named_and_the_rest_still_reports():
    results = fake_results()
    results["live/slow-model"] = {"args": ["live"], "error": "ffmpeg is not installed"}
    results["cameras/latency"] = {"args": ["cameras"], "error": "boom"}
    text = "\n".join(format_section(results))
    assert "- live/slow-model: not measured: ffmpeg is not installed" in text
    assert "- cameras/latency: not measured: boom" in text
    assert "- File mode, openvino openvino-int8" in text and "- Memory: RSS" in text
    assert "### Live mode" not in text and "### 4 cameras" not in text


def test_measure_reports_a_failing_scenario_without_caching_it(monkeypatch, tmp_path: Path):
    def fake_run(args: list[str], timeout: float) -> dict:
        if args[0] == "cameras":
            raise EdgecamError("runtime benchmark cameras failed")
        return {"ok": True}

    monkeypatch.setattr(runtime_bench, "run_scenario", fake_run)
    monkeypatch.setattr(runtime_bench, "prepare_videos", lambda folder: {k: folder / k for k in runtime_bench.VIDEOS})
    results = runtime_bench.measure(tmp_path, Path("bundle"), soak=1.0, force=False)
    assert results["cameras/latency"]["error"] == "runtime benchmark cameras failed"
    cached = json.loads((tmp_path / "runtime-bench" / "results.json").read_text())
    assert not any(k.startswith("cameras/") for k in cached) and "live/keeps-up" in cached


def test_measure_reruns_everything_for_a_re_exported_bundle(monkeypatch, tmp_path: Path):
    calls: list[list[str]] = []
    monkeypatch.setattr(runtime_bench, "run_scenario", lambda args, timeout: calls.append(args) or {"ok": True})
    monkeypatch.setattr(runtime_bench, "prepare_videos", lambda folder: {k: folder / k for k in runtime_bench.VIDEOS})
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "edgecam.json").write_text(json.dumps({"created": "2026-11-25T07:00:00+00:00"}))
    first = runtime_bench.measure(tmp_path, bundle, soak=1.0, force=False)
    n = len(calls)
    runtime_bench.measure(tmp_path, bundle, soak=1.0, force=False)
    assert len(calls) == n  # same bundle: all cached
    (bundle / "edgecam.json").write_text(json.dumps({"created": "2026-11-25T08:00:00+00:00"}))
    runtime_bench.measure(tmp_path, bundle, soak=1.0, force=False)
    assert len(calls) == 2 * n == 2 * len(first)
