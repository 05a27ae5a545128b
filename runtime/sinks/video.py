"""Write annotated frames to a video file with `cv2.VideoWriter`.

The writer opens lazily on the first frame, so the output size is the real frame size (a camera's resolution
is often only known once it delivers). This OpenCV build cannot encode H.264: .mp4 uses `mp4v`, .avi `MJPG`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.videolog import silence_ffmpeg_logs

silence_ffmpeg_logs()  # before the first writer opens (runtime/videolog.py)

FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
# Free space the writer never eats into: an MP4 is playable only once `close()` writes its index (a few bytes per
# frame) at the end, so the file is closed while there is still room for it rather than when the disk is full.
RESERVE_BYTES = 8 << 20


class VideoSink:
    """`with VideoSink(path, fps) as sink: sink.write(image)`; frames of another size are resized to the first."""

    def __init__(
        self, path: str | Path, fps: float = 25.0, fourcc: str | None = None, reserve_bytes: int = RESERVE_BYTES
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if fourcc is None and suffix not in FOURCC:
            raise EdgecamError(
                f"cannot write video with extension {suffix or '(none)'!r}", path=self.path, fix="use .mp4 or .avi"
            )
        if fps <= 0:
            raise EdgecamError(f"video fps must be > 0, got {fps}", path=self.path)
        self.fps = float(fps)
        self.fourcc = fourcc or FOURCC[suffix]
        self.size: tuple[int, int] | None = None  # (width, height), set by the first frame
        self.frames = 0
        self.reserve_bytes = reserve_bytes
        self._writer: cv2.VideoWriter | None = None

    def _open(self, width: int, height: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgecamError(f"cannot create the folder: {exc.strerror}", path=self.path.parent) from None
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
        if not writer.isOpened():
            raise EdgecamError(
                f"cannot open a {self.fourcc} video writer ({width}x{height} at {self.fps:g} fps)",
                path=self.path,
                fix="check the folder is writable; use .mp4 (mp4v) or .avi (MJPG)",
            )
        self._writer, self.size = writer, (width, height)

    def write(self, image: np.ndarray) -> None:
        """Append one BGR uint8 HxWx3 frame. When the disk is nearly full the file is closed (and stays playable)
        and an EdgecamError says so: OpenCV's writer would otherwise fail silently, frame after frame."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise EdgecamError(f"VideoSink needs HxWx3 uint8 BGR frames, got {image.shape} {image.dtype}")
        self._check_space()
        h, w = image.shape[:2]
        if self._writer is None:
            self._open(w, h)
        assert self._writer is not None and self.size is not None
        if (w, h) != self.size:  # cv2.VideoWriter would drop a wrong-sized frame without a word
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def _check_space(self) -> None:
        try:
            free = shutil.disk_usage(self.path.parent if self._writer is None else self.path).free
        except OSError:
            return  # the folder is not there yet: _open() creates it or says why not
        if free < self.reserve_bytes:
            self.close()
            raise EdgecamError(
                f"disk full ({free >> 20} MiB free): the video was closed after {self.frames} frames and stays "
                "playable",
                path=self.path,
                fix="free space on that disk or write the video elsewhere",
            )

    def close(self) -> None:
        """Finish the file (writes the container index); safe to call twice."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
