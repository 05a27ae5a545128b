"""Motion gating on synthetic frames: static scenes skip, moving boxes run, masked motion is ignored."""

from __future__ import annotations

import numpy as np
import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.motion import MotionConfig, MotionGate

H, W = 120, 160
METHODS = ["mog2", "diff"]


def scene(i: int, box: tuple[int, int] | None = None, seed: int = 0, size: int = 30) -> np.ndarray:
    """A textured grey background with mild sensor noise, plus a white box at `box` (x, y) when given."""
    rng = np.random.default_rng(seed * 1000 + i)
    yy, xx = np.mgrid[0:H, 0:W]
    image = (90 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.int16)
    image = np.clip(image + rng.integers(-3, 4, (H, W)), 0, 255).astype(np.uint8)
    image = np.repeat(image[:, :, None], 3, axis=2)
    if box is not None:
        x, y = box
        image[y : y + size, x : x + size] = 255
    return image


def run(gate: MotionGate, frames: list[np.ndarray], fps: float = 10.0) -> list[bool]:
    return [gate.check(f, i / fps) for i, f in enumerate(frames)]


@pytest.mark.parametrize("method", METHODS)
def test_a_static_scene_is_skipped_after_the_first_frame(method):
    gate = MotionGate(MotionConfig(method=method, max_skip_seconds=100))
    decisions = run(gate, [scene(i) for i in range(20)])
    assert decisions[0] is True  # nothing to compare with yet
    assert decisions[1:] == [False] * 19
    assert gate.skipped == 19


@pytest.mark.parametrize("method", METHODS)
def test_a_moving_box_is_processed(method):
    gate = MotionGate(MotionConfig(method=method, max_skip_seconds=100))
    warmup = [scene(i) for i in range(5)]
    moving = [scene(5 + i, box=(10 + 8 * i, 40)) for i in range(10)]
    decisions = run(gate, warmup + moving)
    assert decisions[5:] == [True] * 10
    assert gate.last_fraction > 0.005


@pytest.mark.parametrize("method", METHODS)
def test_motion_inside_a_masked_area_is_ignored(method):
    clock = ((0, 0), (80, 0), (80, 60), (0, 60))  # the top-left quarter: a burnt-in clock, a tree
    gate = MotionGate(MotionConfig(method=method, max_skip_seconds=100, mask=(clock,)))
    warmup = [scene(i) for i in range(5)]
    inside = [scene(5 + i, box=(5 + 4 * i, 5), size=20) for i in range(8)]  # stays within x < 80, y < 60
    assert run(gate, warmup + inside)[5:] == [False] * 8
    outside = scene(20, box=(110, 80))
    assert gate.check(outside, 2.0) is True


def test_a_frame_is_processed_anyway_after_max_skip_seconds():
    gate = MotionGate(MotionConfig(max_skip_seconds=1.0))
    decisions = run(gate, [scene(i) for i in range(25)], fps=10.0)  # 2.4 s of a static scene
    assert [i for i, d in enumerate(decisions) if d] == [0, 10, 20]
    assert gate.skipped == 22


def test_a_size_change_restarts_the_background():
    gate = MotionGate(MotionConfig(method="diff", max_skip_seconds=100))
    run(gate, [scene(i) for i in range(3)])
    smaller = scene(3)[:60, :80]
    assert gate.check(smaller, 1.0) is True  # a new size has no reference: processed
    assert gate.check(smaller.copy(), 1.1) is False


def test_everything_masked_never_counts_as_motion():
    everything = ((0, 0), (W, 0), (W, H), (0, H))
    gate = MotionGate(MotionConfig(method="diff", max_skip_seconds=100, mask=(everything,)))
    run(gate, [scene(0)])
    assert gate.check(scene(1, box=(50, 50)), 0.1) is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"method": "optical-flow"}, "method"),
        ({"min_area": 2}, "min_area"),
        ({"mask": [[[0, 0], [1, 1]]]}, "at least 3 points"),
        ({"mask": [[0, 0, 1]]}, "list of \\[x, y\\] points"),
        ({"treshold": 3}, "unknown key"),
        ({"width": 4}, "width"),
    ],
)
def test_invalid_motion_config(raw, message):
    with pytest.raises(ValueError, match=message):
        MotionConfig.from_dict(raw)


def test_gate_refuses_an_invalid_config_with_an_edgecam_error():
    with pytest.raises(EdgecamError, match="invalid motion settings"):
        MotionGate(MotionConfig(min_area=-1))
