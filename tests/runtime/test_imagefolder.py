import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import load_images, load_splits, read_image, scan
from tests.conftest import write_color_dataset


def test_corrupt_images_are_skipped_counted_and_named(color_data, capsys):
    split = scan(color_data / "train")
    images, targets, bad = load_images(split, "training images")
    assert [p.name for p in bad] == ["corrupt.png"]
    assert len(images) == len(split) - 1 == len(targets)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt.png" in err and "skipped 1" in err


def test_seeded_split_is_deterministic_and_stratified(tmp_path):
    write_color_dataset(tmp_path, 20)
    a_train, a_val = load_splits(tmp_path, 0.25, seed=3)
    b_train, b_val = load_splits(tmp_path, 0.25, seed=3)
    _, c_val = load_splits(tmp_path, 0.25, seed=4)
    assert a_val.samples == b_val.samples and a_val.samples != c_val.samples
    assert not set(a_train.samples) & set(a_val.samples)
    assert [t for _, t in a_val.samples].count(0) == 5


def test_explicit_val_folder_wins(color_data):
    train, val = load_splits(color_data)
    assert all("/val/" in str(p) for p, _ in val.samples) and train.classes == val.classes


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        ({}, "at least two"),
        ({"a": 2}, "at least two"),
        ({"a": 2, "b": 0}, "no images"),
    ],
)
def test_bad_layouts(tmp_path, layout, match):
    for name, count in layout.items():
        (tmp_path / name).mkdir()
        for i in range(count):
            (tmp_path / name / f"{i}.png").write_bytes(b"x")
    with pytest.raises(EdgecamError, match=match):
        scan(tmp_path)


def test_missing_folder_and_unreadable_image(tmp_path):
    with pytest.raises(EdgecamError, match="not found"):
        scan(tmp_path / "nope")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(EdgecamError, match="bad.jpg"):
        read_image(bad)
