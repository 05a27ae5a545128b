"""Frame sources: video file, image folder, camera index, RTSP/HTTP URL -> an iterator of `Frame`s.

Files and folders are read in order (nothing dropped). Live sources (`runtime/live.py`) are read on their own
thread keeping only the newest frame, with reconnection.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import IMAGE_EXTS, read_image
from edgecam.runtime.priority import call_with_lower_priority
from edgecam.runtime.reconnect import EventCallback, ReconnectPolicy
from edgecam.runtime.redact import mask_url
from edgecam.runtime.types import Frame
from edgecam.runtime.videolog import silence_ffmpeg_logs

silence_ffmpeg_logs()  # before this process opens its first capture: later it has no effect

IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTS))
LIVE_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")
OPEN_TIMEOUT_MS = 5000  # an unreachable URL fails after this instead of hanging
DEFAULT_LOOP_FPS = 25.0  # the gap between a looped file's passes when the file does not give its rate


class Capture(Protocol):
    """The part of `cv2.VideoCapture` the sources use, so tests can inject a fake camera."""

    def isOpened(self) -> bool: ...  # noqa: N802 - cv2's spelling
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def grab(self) -> bool: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[Any], Capture]
Resolution = tuple[int, int]  # (width, height)


def default_capture(target: str | int) -> Capture:
    """cv2.VideoCapture with open/read timeouts for URLs, so a dead camera cannot hang the process.

    OpenCV's own warnings are muted while opening: a failure becomes one EdgecamError instead.
    """
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        if isinstance(target, str) and target.lower().startswith(LIVE_PREFIXES):
            ms = OPEN_TIMEOUT_MS
            return cv2.VideoCapture(
                target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            )
        return cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(level)


@dataclass
class SourceStats:
    """`read` frames were decoded; `delivered` reached the consumer; `dropped` were replaced by newer live frames
    (or left unread at close); `corrupt` failed to decode and were skipped. Stride-skipped frames are not read.
    `reconnects` counts the times a lost (or never opened) live stream came back."""

    read: int = 0
    delivered: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    corrupt_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def warn(message: str) -> None:
    """One warning line on stderr, as everywhere in edgecam (stdout stays clean for --json)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def as_frame(image: Any, timestamp: float, source_id: str, index: int, file: str | None = None) -> Frame | None:
    """A Frame, or None when the decoder handed back something that is not a BGR image (a corrupt frame)."""
    try:
        return Frame(image, timestamp=timestamp, source_id=source_id, index=index, file=file)
    except ValueError:
        return None


def resize_frame(frame: Frame, resolution: Resolution) -> Frame:
    """The frame scaled to (width, height): area averaging when shrinking (no aliasing), linear when growing."""
    w, h = resolution
    if (frame.width, frame.height) == (w, h):
        return frame
    shrink = w * h < frame.width * frame.height
    image = cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return replace(frame, image=image)


class Source:
    """Iterate to get `Frame`s; use as a context manager (or call `close()`) to release the device or file.

    `spec` is the source as it may be shown (credentials masked: `runtime/redact.py`); it names the frames
    (`Frame.source_id`), events, warnings and errors. Only the capture opener is given the real URL.

    With `resolution` (width, height) every delivered frame is resized, after the newest-frame choice, so frames
    a live source drops are never resized."""

    def __init__(
        self, spec: str, max_fps: float | None = None, stride: int = 1, resolution: Resolution | None = None
    ) -> None:
        if stride < 1:
            raise EdgecamError(f"stride must be >= 1, got {stride}", fix="use --stride 1 to keep every frame")
        if max_fps is not None and max_fps <= 0:
            raise EdgecamError(f"max_fps must be > 0, got {max_fps}")
        if resolution is not None and (len(resolution) != 2 or min(int(v) for v in resolution) < 8):
            raise EdgecamError(f"resolution must be [width, height] of at least 8 px, got {list(resolution)}")
        self.spec, self.max_fps, self.stride = mask_url(spec), max_fps, stride
        self.resolution = (int(resolution[0]), int(resolution[1])) if resolution is not None else None
        self.fps: float | None = None
        self.size: tuple[int, int] | None = self.resolution  # (width, height) where known
        self._stats = SourceStats()
        self._closed = False
        self._due: float | None = None  # monotonic time the last paced frame was due
        self._first: Frame | None = None

    def __iter__(self) -> Iterator[Frame]:
        for frame in self._frames():
            self._stats.delivered += 1
            yield resize_frame(frame, self.resolution) if self.resolution else frame

    def _set_size(self, width: int, height: int) -> None:
        if self.resolution is None and width > 0 and height > 0:
            self.size = (width, height)

    def _frames(self) -> Iterator[Frame]:
        """Ordered sources: the frame peeked at open (proof the source decodes), then `_read()` until None."""
        frame, self._first = self._first, None
        while frame is not None:
            due = self._pace()
            if due is not None:
                frame.arrived = due
            yield frame
            frame = self._read()

    def _read(self) -> Frame | None:
        raise NotImplementedError

    def _pace(self) -> float | None:
        """Hold the consumer to `max_fps` on a fixed schedule, as a camera delivers frames; returns the wall-clock
        time this frame was due (None without `max_fps`). A consumer that falls behind gets frames at once, and their
        age shows the delay; more than a second behind, the schedule restarts from now."""
        if not self.max_fps:
            return None
        now = time.monotonic()
        if self._due is None or now - self._due > 1.0:
            self._due = now
        else:
            self._due += 1.0 / self.max_fps
        if self._due > now:
            time.sleep(self._due - now)
        return time.time() - (time.monotonic() - self._due)

    def stats(self) -> SourceStats:
        return self._stats

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFileSource(Source):
    """Every frame of a video file in order; `Frame.timestamp` is the position in the file, in seconds.

    With `loop` the file is reopened at its end and played again, forever: `Frame.index` and `Frame.timestamp`
    run on from the previous pass (one frame period later), so trackers and scenarios see time go forward."""

    def __init__(
        self,
        spec: str,
        max_fps: float | None = None,
        stride: int = 1,
        capture_factory: CaptureFactory = default_capture,
        resolution: Resolution | None = None,
        loop: bool = False,
    ) -> None:
        super().__init__(spec, max_fps, stride, resolution)
        self.loop, self.passes = loop, 1
        self._open_capture = lambda: call_with_lower_priority(lambda: capture_factory(spec))  # decoders run lower
        self._cap = self._open_capture()
        if not self._cap.isOpened():
            raise EdgecamError(
                "cannot open the video", path=self.spec, fix="check the path and that the file is a video"
            )
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if fps > 0 else None
        self._pos = -1  # the position of the last read in the current pass
        self._base = 0  # frames in the passes before this one: `Frame.index` keeps increasing over a loop
        self._offset = 0.0  # seconds of the passes before this one
        self._last_ts, self._last_pos = 0.0, -1  # the last delivered frame's
        self._first = self._read()
        if self._first is None:
            self._cap.release()
            raise EdgecamError(
                "video has no decodable frames", path=self.spec, fix="check the file is complete; re-encode it"
            )
        self._set_size(self._first.width, self._first.height)

    def _read(self) -> Frame | None:
        frame = self._read_pass()
        if frame is None and self.loop and self._last_pos >= 0 and not self._closed and self._rewind():
            frame = self._read_pass()  # None again: the file stopped decoding (replaced, truncated): the end
        return frame

    def _rewind(self) -> bool:
        """Reopen the file for the next pass; False (the end, with a warning) when it cannot be opened again."""
        self._cap.release()
        self._cap = self._open_capture()
        if not self._cap.isOpened():
            warn(f"{self.spec}: cannot reopen the video to loop it; the source ends")
            return False
        self._base += self._last_pos + 1  # the failed reads that signalled the end take no index
        self._offset = self._last_ts + 1.0 / (self.fps or DEFAULT_LOOP_FPS)  # one frame after the last one
        self._pos = -1
        self.passes += 1
        return True

    def _read_pass(self) -> Frame | None:
        """The next decodable frame. Failed reads followed by a good frame count as corrupt; a failing tail is EOF."""
        pending = 0
        while not self._closed:
            if self._pos >= 0:  # the first frame of a pass is never strided over
                for _ in range(self.stride - 1):
                    if not self._cap.grab():
                        return None
                    self._pos += 1
            ok, image = self._cap.read()
            self._pos += 1
            if not ok:
                pending += 1
                if pending >= 3:  # cv2 signals the end of the file with read() == False
                    return None
                continue
            frame = as_frame(image, self._timestamp(), self.spec, self._base + self._pos)
            if frame is None:
                self._stats.corrupt += 1
                continue
            self._stats.read += 1
            self._stats.corrupt += pending
            self._last_ts, self._last_pos = frame.timestamp, self._pos
            return frame
        return None

    def _timestamp(self) -> float:
        msec = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        if msec <= 0 and self._pos > 0 and self.fps:
            return self._offset + self._pos / self.fps
        return self._offset + msec / 1000.0

    def close(self) -> None:
        if not self._closed:
            self._cap.release()
        super().close()


class ImageFolderSource(Source):
    """Images of a folder in name order (or one image file); unreadable ones are skipped, counted and named."""

    def __init__(
        self, spec: str, max_fps: float | None = None, stride: int = 1, resolution: Resolution | None = None
    ) -> None:
        super().__init__(spec, max_fps, stride, resolution)
        root = self._root = Path(spec)
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else [root]
        # (index in the listing, path): `Frame.index` names the file even with a stride
        self._paths = list(enumerate(paths))[:: self.stride]
        if not self._paths:
            raise EdgecamError(
                "no images in the folder", path=self.spec, fix=f"add images ({', '.join(IMAGE_SUFFIXES)})"
            )
        self._pos = 0
        self._warned = False
        self._first = self._read()
        if self._first is None:
            raise EdgecamError("none of the images can be read", path=self.spec, fix="check the files are valid images")

    def _read(self) -> Frame | None:
        while self._pos < len(self._paths) and not self._closed:
            index, path = self._paths[self._pos]
            self._pos += 1
            try:  # the same decoder as training and `edgecam val`
                frame = as_frame(read_image(path), path.stat().st_mtime, self.spec, index, self._name(path))
            except EdgecamError:
                frame = None
            if frame is not None:
                self._stats.read += 1
                return frame
            self._stats.corrupt += 1
            self._stats.corrupt_files.append(path.name)
        self._warn_skipped()
        return None

    def _name(self, path: Path) -> str:
        """The image's name relative to the folder (its own name for a one-image source)."""
        return path.relative_to(self._root).as_posix() if self._root.is_dir() else path.name

    def _warn_skipped(self) -> None:
        """One warning line naming every skipped image, once the folder is done (or closed)."""
        if self._stats.corrupt_files and not self._warned:
            self._warned = True
            names = self._stats.corrupt_files
            shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
            warn(f"{self.spec}: skipped {len(names)} unreadable image(s): {shown}")

    def close(self) -> None:
        self._warn_skipped()
        super().close()


def is_live(spec: str) -> bool:
    """A camera index or a stream URL (read on its own thread, newest frame only) rather than a file or folder."""
    return spec.isdigit() or spec.lower().startswith(LIVE_PREFIXES)


def open_source(
    spec: str,
    max_fps: float | None = None,
    stride: int = 1,
    *,
    capture_factory: CaptureFactory | None = None,
    resolution: Resolution | None = None,
    reconnect: ReconnectPolicy | Any = None,
    on_event: EventCallback | None = None,
    loop: bool = False,
) -> Source:
    """Open a source by its spec: "0" (camera), rtsp://, http(s)://, a video file, an image folder or image.

    `loop` replays a video file from the start when it ends (`VideoFileSource`); other sources refuse it.

    `reconnect` (live sources only) keeps a camera that drops out or is down at start-up coming back; the camera's
    typed `reconnect` settings are taken as they are (they convert themselves)."""
    if reconnect is not None and not isinstance(reconnect, ReconnectPolicy):
        reconnect = reconnect.to_policy()
    spec = str(spec)
    factory = capture_factory or default_capture
    if is_live(spec):
        if loop:
            raise EdgecamError("a live source cannot be looped", path=mask_url(spec), fix="loop is for video files")
        from edgecam.runtime.live import LiveSource  # live.py builds on this module's Source

        return LiveSource(spec, max_fps, stride, factory, resolution, reconnect, on_event)
    if is_image_source(spec):
        if loop:
            raise EdgecamError("an image folder cannot be looped", path=spec, fix="loop is for video files")
        return ImageFolderSource(spec, max_fps, stride, resolution)
    if Path(spec).is_file():
        return VideoFileSource(spec, max_fps, stride, capture_factory=factory, resolution=resolution, loop=loop)
    raise source_not_found(spec)


def is_image_source(spec: str) -> bool:
    """An image folder or a single image file (read by `ImageFolderSource`) on disk."""
    path = Path(spec)
    return path.is_dir() or (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def source_not_found(spec: str) -> EdgecamError:
    return EdgecamError(
        "source not found",
        path=mask_url(spec),
        fix="check the path, URL (rtsp://, http://) or camera index (0, 1, ...)",
    )
