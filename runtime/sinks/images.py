"""One annotated image per input image, under the input's own name: the output of an image-folder run.

A folder of unrelated stills is read back as stills, next to the originals' names, not as a video. The file keeps
its extension when OpenCV can write it, else it becomes .jpg. A write that fails (a full disk) removes the partial
file and raises `EdgecamError`, so the processor stops this output as it does the video and JSON lines.
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError

FALLBACK_SUFFIX = ".jpg"
JPEG_QUALITY = 90


def output_name(name: str) -> str:
    """`name` when OpenCV can encode its extension, else the same name with .jpg."""
    path = PurePosixPath(name)
    return name if cv2.haveImageWriter(path.name) else str(path.with_suffix(FALLBACK_SUFFIX))


class ImageSink:
    """`path = sink.save(image, "a/b.png")` writes `<folder>/a/b.png`; the folder is created at once."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.saved = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgecamError(f"cannot create the image folder: {exc.strerror}", path=self.folder) from None
        self._written: set[str] = set()  # names this run wrote: a .jpg fallback never overwrites another input

    def save(self, image: np.ndarray, name: str) -> Path:
        """Encode and write one image under `name` (relative to the folder; it cannot climb out of it)."""
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.name:
            raise EdgecamError(f"image name {name!r} is not a plain relative name", path=self.folder)
        out = output_name(name)
        if out != name and out in self._written:  # b.webp -> b.jpg after b.jpg itself
            out = name + FALLBACK_SUFFIX
        path = self.folder / out
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.suffix.lower() in (".jpg", ".jpeg") else []
        ok, data = cv2.imencode(path.suffix, image, params)
        if not ok:
            raise EdgecamError(f"cannot encode the image as {path.suffix}", path=path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.tobytes())
        except OSError as exc:
            with contextlib.suppress(OSError):  # a half-written picture is worse than none
                path.unlink(missing_ok=True)
            raise EdgecamError(
                f"cannot write an image: {exc.strerror or exc}; {self.saved} images were written",
                path=path,
                fix="free space on that disk or write the images elsewhere",
            ) from None
        self._written.add(out)
        self.saved += 1
        return path
