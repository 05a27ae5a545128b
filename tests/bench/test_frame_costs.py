"""The per-frame cost benchmark runs, checks its two implementations agree and renders its section."""

from __future__ import annotations

import math

import numpy as np

from edgecam.bench.frame_costs import frame_costs, markdown, synthetic_detector_output


def test_synthetic_output_has_the_asked_candidates():
    preds = synthetic_detector_output(boxes=100, seed=3)
    assert preds.shape == (2100, 14) and preds.dtype == np.float32
    assert np.count_nonzero(preds[:, 4:].max(axis=1) > math.log(0.25 / 0.75)) == 100


def test_frame_costs_small_run():
    result = frame_costs(runs=15, video_frames=20)
    stages = result["stages"]
    assert set(stages) == {"video_decode", "preprocess", "preprocess_before", "decode", "decode_before"}
    assert all(0 < s["p50_ms"] <= s["p95_ms"] for s in stages.values())
    assert result["preprocess_max_abs_diff"] == 0.0 and result["preprocess_same_letterbox"]
    assert result["decode_identical"] and result["candidates"] == 100
    text = markdown(result)
    assert text.startswith("## Per-frame cost outside inference") and "| decode + class-aware NMS" in text
