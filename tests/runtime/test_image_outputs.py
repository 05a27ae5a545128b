"""Image folders as sources: each JSON line names its image, and `--save-images` writes one annotated picture per
input under the input's own name (not a video of unrelated stills)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecam.runtime.camera_config import parse_runtime_config
from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.pipeline import run
from edgecam.runtime.sinks.images import ImageSink
from edgecam.runtime.sources import open_source


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def readable(image_folder) -> list[str]:
    return sorted(p.name for p in image_folder.path.iterdir() if p.suffix == ".png")


def test_folder_frames_carry_their_file_name(image_folder):
    with open_source(str(image_folder.path)) as source:
        assert [f.file for f in source] == readable(image_folder)
    with open_source(str(image_folder.path / "img_03.png")) as source:
        assert [f.file for f in source] == ["img_03.png"]


def test_folder_run_names_every_line_and_writes_one_annotated_image_per_input(tiny_bundle, image_folder, tmp_path):
    out, jsonl = tmp_path / "annotated", tmp_path / "f.jsonl"
    summary = run(tiny_bundle, str(image_folder.path), backend="onnxruntime", jsonl=jsonl, save_images=out)
    names = readable(image_folder)
    lines = read_jsonl(jsonl)
    assert [line["file"] for line in lines] == names
    assert [line["results"][0]["label"] for line in lines] == image_folder.labels  # each name with its own result
    assert sorted(p.name for p in out.iterdir()) == names  # same names and extensions, nothing for the corrupt one
    for name in names:
        original, annotated = cv2.imread(str(image_folder.path / name)), cv2.imread(str(out / name))
        assert annotated is not None and annotated.shape == original.shape
        assert np.any(annotated != original)  # the label is drawn on it
    assert summary.outputs["images"] == str(out) and not summary.problems


def test_video_frames_have_no_file_key(tiny_bundle, synthetic_video, tmp_path):
    run(tiny_bundle, str(synthetic_video.path), backend="onnxruntime", jsonl=tmp_path / "v.jsonl", max_frames=3)
    assert all("file" not in line for line in read_jsonl(tmp_path / "v.jsonl"))


def test_image_sink_keeps_writable_extensions_and_falls_back_to_jpg(tmp_path):
    sink = ImageSink(tmp_path / "out")
    image = np.full((20, 30, 3), 200, np.uint8)
    assert sink.save(image, "a.png").name == "a.png"
    assert sink.save(image, "b.xyz").name == "b.jpg"  # OpenCV cannot write .xyz
    assert sink.save(image, "c.jpg").name == "c.jpg"
    assert sink.save(image, "c.xyz").name == "c.xyz.jpg"  # never over another input's picture
    assert cv2.imread(str(tmp_path / "out" / "b.jpg")).shape == (20, 30, 3)
    for bad in ("../escape.png", "/abs.png"):
        with pytest.raises(EdgecamError, match="not a plain relative name"):
            sink.save(image, bad)


def test_a_full_disk_stops_the_images_and_keeps_the_json_lines(tiny_bundle, image_folder, tmp_path, capfd):
    """The third picture's path leads to /dev/full (a real ENOSPC without a mount): that output stops, no partial
    file is left, the run goes on with its JSON lines and reports the stopped output (exit code 1)."""
    out, jsonl = tmp_path / "annotated", tmp_path / "f.jsonl"
    out.mkdir()
    names = readable(image_folder)
    (out / names[2]).symlink_to("/dev/full")
    summary = run(tiny_bundle, str(image_folder.path), backend="onnxruntime", jsonl=jsonl, save_images=out)
    assert len(read_jsonl(jsonl)) == len(names)
    assert sorted(p.name for p in out.iterdir()) == names[:2]  # the failed one removed, none written after it
    assert summary.problems and summary.problems[0].startswith("images output stopped: ")
    assert "No space left on device" in summary.problems[0]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(
    ("source", "kwargs", "message"),
    [
        ("video", {"save_images": Path("x")}, "--save-images is for image folders"),
        ("folder", {"loop": True}, "--loop is for video files"),
    ],
)
def test_outputs_that_do_not_fit_the_source_are_refused(
    tiny_bundle, synthetic_video, image_folder, source, kwargs, message
):
    spec = str(synthetic_video.path if source == "video" else image_folder.path)
    with pytest.raises(EdgecamError, match=message):
        run(tiny_bundle, spec, backend="onnxruntime", **kwargs)


@pytest.mark.parametrize(
    ("camera", "message"),
    [
        ({"source": "video", "sinks": {"images": "out"}}, "sinks.images: .* is not an image folder"),
        ({"source": "folder", "sinks": {"images": "folder"}}, "sinks.images: is the source folder"),
        ({"source": "folder", "loop": True}, "loop: an image folder cannot be looped"),
        ({"source": "rtsp://user:pw@10.0.0.5/s", "loop": True}, r"loop: a live source \(rtsp://user:\*\*\*@10"),
    ],
)
def test_cameras_yaml_checks_images_and_loop_against_the_source(
    tiny_bundle, synthetic_video, image_folder, camera, message
):
    where = {"video": str(synthetic_video.path), "folder": str(image_folder.path)}
    camera = {**camera, "source": where.get(camera["source"], camera["source"])}
    if "sinks" in camera:
        camera["sinks"] = {"images": where.get(camera["sinks"]["images"], camera["sinks"]["images"])}
    with pytest.raises(EdgecamError, match=message):
        parse_runtime_config({"cameras": [{"name": "c", "bundle": str(tiny_bundle), **camera}]}, "t.yaml", Path.cwd())


def test_cameras_yaml_images_sink_runs(tiny_bundle, image_folder, tmp_path):
    from edgecam.runtime.cameras import MultiCameraRunner

    camera = {"name": "shelf", "source": str(image_folder.path), "bundle": str(tiny_bundle), "backend": "onnxruntime"}
    camera["sinks"] = {"images": "pictures"}
    config = parse_runtime_config({"cameras": [camera]}, tmp_path / "cameras.yaml", tmp_path)
    MultiCameraRunner(config).run()
    assert sorted(os.listdir(tmp_path / "pictures")) == readable(image_folder)
