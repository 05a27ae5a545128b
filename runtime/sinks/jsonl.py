"""One JSON object per line per frame: the run's machine-readable record.

The file is line-buffered, so every finished line reaches the OS at once: an interrupted or killed run keeps
everything written up to its last frame, and a reader can `tail -f` it. When the disk fills, the half-written last
line is cut off again, so the file stays valid JSON lines up to the last whole frame.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.types import Detections, Frame


def _detections_to_list(dets: Detections, class_names: Sequence[str] | None) -> list[dict[str, Any]]:
    """Detections carry no to_dict(); one dict per box keeps the JSON self-explanatory (no column orders)."""
    out = []
    for xyxy, score, cid, tid in zip(dets.xyxy, dets.scores, dets.class_ids, dets.track_ids, strict=True):
        item: dict[str, Any] = {"xyxy": [round(float(v), 2) for v in xyxy], "score": round(float(score), 5)}
        item["class_id"] = int(cid)
        if class_names is not None and 0 <= cid < len(class_names):
            item["label"] = class_names[cid]
        if tid >= 0:
            item["track_id"] = int(tid)
        out.append(item)
    return out


def to_jsonable(value: Any, class_names: Sequence[str] | None = None) -> Any:
    """A result (anything with `to_dict()`, Detections, numpy values) -> plain JSON types."""
    if isinstance(value, Detections):
        return _detections_to_list(value, class_names)
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, class_names) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class JsonlSink:
    """`with JsonlSink(path) as sink: sink.write(frame, results)`; opens (and truncates) the file at once."""

    def __init__(self, path: str | Path, class_names: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.lines = 0
        self.bytes = 0  # the length of the whole lines written: where a failed write is cut back to
        self.rejected = 0  # frames not written because a value was NaN or inf (JSON has no such numbers)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise EdgecamError(
                f"cannot write JSON lines: {exc.strerror}", path=self.path, fix="check the folder"
            ) from None

    def write(self, frame: Frame, results: Sequence[Any], **extra: Any) -> None:
        """One line: the frame's index, timestamp and source (and `file`, the image's name within its folder, for
        image-folder frames), its results, and any extra keys. A record holding
        NaN or inf is counted in `rejected` and not written (the model path drops such outputs before this)."""
        record = {
            "frame": frame.index,
            "timestamp": round(float(frame.timestamp), 6),
            "source": frame.source_id,
            **({"file": frame.file} if frame.file is not None else {}),  # the input image, for image folders
            "results": [to_jsonable(r, self.class_names) for r in results],
            **{k: to_jsonable(v) for k, v in extra.items()},
        }
        try:  # the last line of defence: `NaN` is no JSON, and one such line breaks every strict reader
            line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        except ValueError:
            self.rejected += 1
            return
        if self._fh.closed:
            raise EdgecamError("the JSON lines file is closed", path=self.path)
        try:
            self._fh.write(line)
        except OSError as exc:
            self._cut(exc)
        self.lines += 1
        self.bytes += len(line)  # json.dumps escapes every non-ASCII character: one byte per character

    def _cut(self, exc: OSError) -> None:
        """Close after a failed write and cut the file back to its last whole line; then say what happened."""
        with contextlib.suppress(OSError):  # the buffered rest of the line cannot be written either
            self._fh.close()
        with contextlib.suppress(OSError):
            os.truncate(self.path, self.bytes)
        raise EdgecamError(
            f"cannot write JSON lines: {exc.strerror or exc}; the file keeps the first {self.lines} frames",
            path=self.path,
            fix="free space on that disk or write the file elsewhere",
        ) from None

    def close(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError as exc:
                self._cut(exc)

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
