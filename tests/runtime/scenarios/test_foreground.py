"""The running background behind motion occlusion, fed real images: a still shelf, a blob, a change that stays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecam.runtime.scenarios.foreground import THRESHOLD, WIDTH, Foreground

FPS = 10
ROI = (400, 200, 200, 160)  # x, y, w, h in a 1280x720 frame
OTHER = (900, 200, 200, 160)


def shelf(seed: int = 0, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """A textured still scene: blocks of random colour, like products on a shelf."""
    w, h = size
    blocks = np.random.default_rng(seed).integers(30, 220, (h // 40 + 1, w // 40 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(blocks, 40, axis=0), 40, axis=1)[:h, :w])


def noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise (sigma 3, from a few fields made once) and a little lighting flicker: not foreground."""
    if image.shape not in _NOISE:
        _NOISE[image.shape] = [np.random.default_rng(k).normal(0, 3, image.shape).astype(np.int16) for k in range(4)]
    gain = 1.0 + rng.uniform(-0.02, 0.02)
    out = cv2.convertScaleAbs(image, alpha=gain).astype(np.int16) + _NOISE[image.shape][int(rng.integers(4))]
    return np.clip(out, 0, 255).astype(np.uint8)


_NOISE: dict[tuple[int, ...], list[np.ndarray]] = {}


def with_blob(image: np.ndarray, x: int, y: int, w: int, h: int, phase: int = 0) -> np.ndarray:
    """A red coat with dark stripes 24 px apart, the stripes `phase` px along (its folds move as it moves)."""
    out = image.copy()
    out[y : y + h, x : x + w] = (40, 40, 230)
    stripes = ((np.arange(y, y + h) + phase) // 12) % 2 == 0
    out[y : y + h, x : x + w][stripes] = (20, 20, 90)
    return out


def test_a_still_scene_has_no_foreground():
    fg, rng, scene = Foreground(2.0), np.random.default_rng(1), shelf()
    for f in range(50):
        fractions = fg.fractions(noisy(scene, rng), f / FPS, [ROI, OTHER])
    assert fractions == [0.0, 0.0]
    assert fg.mask is not None and fg.mask.shape[1] == WIDTH  # analysed at a quarter of 1280


def test_a_blob_over_the_roi_is_foreground_there_only():
    fg, rng, scene = Foreground(2.0), np.random.default_rng(2), shelf()
    for f in range(20):
        fg.fractions(noisy(scene, rng), f / FPS, [ROI])
    x, y, w, h = ROI
    # a shopper reaching down from above: the blob comes from outside the ROI and covers its top half
    covered, elsewhere = fg.fractions(noisy(with_blob(scene, x, y - 100, w, 100 + h // 2), rng), 2.0, [ROI, OTHER])
    assert covered == pytest.approx(0.5, abs=0.1) and elsewhere == 0.0
    back = fg.fractions(noisy(scene, rng), 2.1, [ROI, OTHER])  # the shopper left: the shelf behind is the old one
    assert back == [0.0, 0.0]


def test_a_change_inside_the_roi_hides_nothing_and_becomes_background_after_settle_seconds():
    """A slot's own change (new products, confined to its ROI) is not an occluder: it is held for the one frame in
    which it happens (its pixels change from that frame to the next, as a passer-by's do), never after, so its state
    change is read at once; it still becomes background after settle_seconds."""
    settle = 1.5
    fg, rng, scene, restocked = Foreground(settle, 10.0), np.random.default_rng(3), shelf(0), shelf(1)
    changed = scene.copy()
    x, y, w, h = ROI
    changed[y : y + h, x : x + w] = restocked[y : y + h, x : x + w]
    for f in range(20):
        fg.fractions(noisy(scene, rng), f / FPS, [ROI])
    seen, changes = [], []
    for k in range(30):
        seen.append(fg.fractions(noisy(changed, rng), 2.0 + k / FPS, [ROI])[0])
        assert fg.changes is not None
        changes.append(float(fg.changes[y // 4 : (y + h) // 4, x // 4 : (x + w) // 4].mean()))
    still = int(settle * FPS)
    assert max(seen[1:]) == 0.0  # never held after the frame of the change
    assert min(changes[1:still]) > 0.5  # but it is foreground (the slot's own) until it has held still long enough
    assert max(changes[still + 1 :]) == 0.0


def test_a_still_blob_from_outside_stays_an_occluder_until_max_hold_seconds():
    """A shopper who stops in front of the slot (reaching beyond it) is held for max_hold_seconds, not settle_seconds:
    otherwise they become background and the classifier reads them as stock."""
    settle, hold = 1.0, 4.0
    fg, rng, scene = Foreground(settle, hold), np.random.default_rng(5), shelf()
    x, y, w, h = ROI
    for f in range(20):
        fg.fractions(noisy(scene, rng), f / FPS, [ROI])
    standing = with_blob(scene, x - 60, y - 120, w + 120, h + 240)
    seen = [fg.fractions(noisy(standing, rng), 2.0 + k / FPS, [ROI])[0] for k in range(60)]
    assert min(seen[: int(hold * FPS)]) > 0.9  # well past settle_seconds
    assert max(seen[int(hold * FPS) + 3 :]) == 0.0  # the limit: standing still that long is the new scene
    without = Foreground(settle)  # no max_hold_seconds: the old rule, settled after settle_seconds
    for f in range(20):
        without.fractions(noisy(scene, rng), f / FPS, [ROI])
    old = [without.fractions(noisy(standing, rng), 2.0 + k / FPS, [ROI])[0] for k in range(30)]
    assert max(old[int(settle * FPS) + 1 :]) == 0.0


@pytest.mark.parametrize("gain", [0.78, 0.85, 1.15, 1.22])  # 15 %: under half the frame differs
def test_a_light_step_rebases_the_background_and_keeps_the_shopper(gain):
    """The lights step by ~20 %: every slot would read as foreground for settle_seconds; the background is re-based
    by the frame's gain at once instead, and a shopper in front of a slot during the step stays foreground."""
    fg, rng, scene = Foreground(1.5, 10.0), np.random.default_rng(6), shelf()
    x, y, w, h = ROI
    for f in range(20):
        fg.fractions(noisy(scene, rng), f / FPS, [ROI, OTHER])
    shopper = with_blob(scene, x - 60, y - 120, w + 120, h + 240)
    for k in range(5):
        fg.fractions(noisy(shopper, rng), 2.0 + k / FPS, [ROI, OTHER])
    dimmed = cv2.convertScaleAbs(shopper, alpha=gain)
    covered, other = fg.fractions(noisy(dimmed, rng), 2.5, [ROI, OTHER])
    assert fg.light_steps == 1
    assert covered > 0.9 and other == 0.0
    after = fg.fractions(noisy(cv2.convertScaleAbs(scene, alpha=gain), rng), 2.6, [ROI, OTHER])
    assert after == [0.0, 0.0]  # the shopper left: the shelf behind, in the new light, is background


def test_a_blob_moving_across_stays_foreground():
    """A shopper who keeps moving never settles, however long they stay in front of the slot (the folds of the coat
    move; a plain one's middle would settle: see the module's docstring)."""
    fg, rng, scene = Foreground(1.0), np.random.default_rng(4), shelf()
    for f in range(20):
        fg.fractions(noisy(scene, rng), f / FPS, [ROI])
    x, y, w, h = ROI
    for k in range(50):  # 5 s, three times settle_seconds, swaying left and right
        shift = (k % 6) * 12
        image = with_blob(scene, x - 40 + shift, y, w + 40, h, phase=12 * k)
        covered = fg.fractions(noisy(image, rng), 2 + k / FPS, [ROI])[0]
        assert covered > 0.5, k


def test_a_soft_edge_sliding_in_is_foreground():
    """Each frame differs from the last by less than the threshold, but the pixel ends far from the background."""
    fg, scene = Foreground(1.0), shelf()
    x, y, w, h = ROI
    for f in range(30):  # long enough for every pixel to count as settled
        fg.fractions(scene, f / FPS, [ROI])
    step = THRESHOLD // 2
    for k in range(1, 9):  # a pale coat coming in from the left, past the ROI
        frame = scene.astype(np.int16)
        frame[y : y + h, x - 80 : x + w] += step * k
        covered = fg.fractions(np.clip(frame, 0, 255).astype(np.uint8), 3 + k / FPS, [ROI])[0]
    assert covered > 0.5


def test_rois_outside_the_frame_and_a_new_resolution():
    fg = Foreground(2.0)
    small = shelf(size=(320, 240))
    assert fg.fractions(small, 0.0, [(400, 300, 50, 50), (0, 0, 10, 10)]) == [0.0, 0.0]
    big = shelf(size=(1280, 720))
    assert fg.fractions(big, 0.1, [ROI]) == [0.0]  # a new size starts a new background, not a full-frame change
    assert fg.mask is not None and fg.mask.shape == (180, 320)


def _warm(fg: Foreground, scene: np.ndarray, rng: np.random.Generator, frames: int = 20) -> float:
    for f in range(frames):
        fg.fractions(noisy(scene, rng), f / FPS, [ROI, OTHER])
    return frames / FPS


@pytest.mark.parametrize("dx, dy", [(3, 0), (-2, 3), (1, -2)])
def test_camera_shake_of_a_few_pixels_is_not_foreground(dx, dy):
    """Every block edge moves when the camera shakes: without undoing the shift they were foreground, and the
    slots were held for as long as the shake lasted."""
    fg, rng, scene = Foreground(2.0), np.random.default_rng(7), shelf()
    t = _warm(fg, scene, rng)
    shaken = cv2.warpAffine(scene, np.float32([[1, 0, dx], [0, 1, dy]]), (1280, 720), borderMode=cv2.BORDER_REPLICATE)
    for k in range(5):
        fractions = fg.fractions(noisy(shaken if k % 2 == 0 else scene, rng), t + k / FPS, [ROI, OTHER])
        assert max(fractions) < 0.1, (k, fractions)


def test_an_occluder_as_dark_as_the_shelf_but_another_colour_is_foreground():
    """Dark green trousers in front of a dark grey shelf: the same grey level, told apart only by colour."""
    fg, rng = Foreground(2.0), np.random.default_rng(8)
    scene = np.full((720, 1280, 3), 60, np.uint8)
    t = _warm(fg, scene, rng)
    x, y, w, h = ROI
    grey = cv2.cvtColor(np.uint8([[[20, 95, 20]]]), cv2.COLOR_BGR2GRAY)[0, 0]
    assert abs(int(grey) - 60) < THRESHOLD, "the same grey level as the shelf"
    person = scene.copy()
    person[y - 100 : y + h, x : x + w] = (20, 95, 20)
    assert fg.fractions(noisy(person, rng), t, [ROI])[0] > 0.9


def test_a_light_step_with_a_clipped_white_wall_is_not_foreground():
    """Brightened by 20 %, a white wall clips at 255: the gain is measured on unclipped pixels and the scaled
    background is clipped too, so nothing is left over as foreground (it used to hold the slots for seconds)."""
    fg, rng = Foreground(2.0), np.random.default_rng(9)
    scene = shelf()
    scene[:, :640] = 235  # half the frame is a white wall
    t = _warm(fg, scene, rng)
    brighter = cv2.convertScaleAbs(scene, alpha=1.2)
    for k in range(3):
        fractions = fg.fractions(noisy(brighter, rng), t + k / FPS, [ROI, OTHER, (100, 200, 200, 160)])
    assert fg.light_steps == 1 and max(fractions) < 0.05, fractions


def test_a_head_passing_over_one_slot_stays_an_occluder():
    """A shopper seen first across two slots, then only over one (the body below matches the shelf): still moving
    where an occluder just was, so it hides the slot instead of being read as the slot's own change."""
    fg, rng, scene = Foreground(2.0), np.random.default_rng(10), shelf()
    t = _warm(fg, scene, rng)
    x, y, w, h = ROI
    fg.fractions(noisy(with_blob(scene, x - 120, y + 20, 200, 80), rng), t, [ROI])  # across the ROI's edge
    for k in range(1, 4):  # then only inside the ROI, moving right
        left = x + 10 + 25 * k
        occluded = fg.fractions(noisy(with_blob(scene, left, y + 20, 60, 80, phase=5 * k), rng), t + k / FPS, [ROI])
        assert occluded[0] > 0.1 and fg.changes is not None and not fg.changes.any(), k


def test_a_product_taken_is_the_slots_own_change_once_it_holds_still():
    fg, rng, scene = Foreground(2.0), np.random.default_rng(11), shelf()
    t = _warm(fg, scene, rng)
    x, y, w, h = ROI
    taken = scene.copy()
    taken[y + 20 : y + 100, x + 20 : x + 100] = (200, 200, 200)
    for k in range(6):
        occluded = fg.fractions(noisy(taken, rng), t + k / FPS, [ROI])[0]
    assert occluded == 0.0 and fg.changes is not None and fg.changes.any()


def test_legs_walking_past_inside_one_slot_are_an_occluder():
    """Only a shopper's legs differ from the shelf, and they fit inside a bottom-row slot: their pixels change from
    every frame to the next, which a slot's own change never does, so they hide the slot."""
    fg, rng, scene = Foreground(2.0), np.random.default_rng(12), shelf()
    t = _warm(fg, scene, rng)
    x, y, w, h = ROI
    for k in range(6):
        legs = with_blob(scene, x + 20 + 15 * k, y + 30, 50, h - 40, phase=7 * k)
        assert fg.fractions(noisy(legs, rng), t + k / FPS, [ROI])[0] > 0.1, k
