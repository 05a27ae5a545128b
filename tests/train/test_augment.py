import numpy as np
import pytest

from edgecam.train.augment import AugmentConfig, augment, random_resized_crop

OFF = AugmentConfig(flip=0, crop_scale=1.0, rotate=0, jitter=0, hue=0, blur=0)


def image(h=40, w=60):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_all_off_is_identity():
    img = image()
    assert not OFF.enabled
    assert np.array_equal(augment(img, np.random.default_rng(0), OFF), img)


def test_flip_always_mirrors():
    img = image()
    out = augment(img, np.random.default_rng(0), AugmentConfig(**{**OFF.__dict__, "flip": 1.0}))
    assert np.array_equal(out, img[:, ::-1])


@pytest.mark.parametrize(
    "field",
    [{"crop_scale": 0.5}, {"rotate": 20.0}, {"jitter": 0.4}, {"hue": 0.1}, {"blur": 1.0}],
)
def test_each_switch_changes_the_image_and_keeps_it_uint8_bgr(field):
    img = image()
    out = augment(img, np.random.default_rng(3), AugmentConfig(**{**OFF.__dict__, **field}))
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape != img.shape or not np.array_equal(out, img)


def test_same_seed_same_result():
    img = image()
    cfg = AugmentConfig()
    a = augment(img, np.random.default_rng(5), cfg)
    b = augment(img, np.random.default_rng(5), cfg)
    assert np.array_equal(a, b)


def test_random_resized_crop_keeps_at_least_the_scale():
    img = image(100, 100)
    rng = np.random.default_rng(1)
    for _ in range(50):
        out = random_resized_crop(img, rng, scale=0.6, ratio=0.2)
        assert out.shape[0] * out.shape[1] >= 0.6 * 100 * 100 * 0.85  # rounding of the sides
