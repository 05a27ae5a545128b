"""JPEG snapshots of alert events, one folder per camera, bounded in count and bytes (oldest pruned first).

A camera runs for months: an alert storm (a flickering zone, a tamper loop) must never fill the device's disk, so
every save prunes the oldest files until the folder is back under `max_count` and `max_bytes`. Files already in the
folder at start-up (a previous run) count too, so restarts stay bounded.
"""

from __future__ import annotations

import re
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.types import Event

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class SnapshotSink:
    """`path = sink.save(image, event)` writes `<ms timestamp>_<kind>_<n>.jpg` (None: not saved, see `save`)."""

    def __init__(
        self, folder: str | Path, max_count: int = 200, max_bytes: int = 50_000_000, quality: int = 85
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise EdgecamError(f"snapshot limits must be positive: {max_count} files, {max_bytes} bytes")
        self.folder = Path(folder)
        self.max_count, self.max_bytes, self.quality = max_count, max_bytes, quality
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            existing = sorted(self.folder.glob("*.jpg"), key=lambda p: (p.stat().st_mtime, p.name))
            self._files: deque[tuple[Path, int]] = deque((p, p.stat().st_size) for p in existing)
        except OSError as exc:
            raise EdgecamError(f"cannot use the snapshot folder: {exc.strerror}", path=self.folder) from None
        self._bytes = sum(size for _, size in self._files)
        self.saved = 0
        self.pruned = 0
        self._seq = 0
        self._prune()

    def save(self, image: np.ndarray, event: Event) -> Path | None:
        """Encode and write one snapshot, then prune; None when it cannot be encoded or alone exceeds `max_bytes`."""
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok or len(data) > self.max_bytes:  # one oversized snapshot must not wipe all the others
            return None
        self._seq += 1
        stamp = int((event.timestamp if event.timestamp > 1e9 else time.time()) * 1000)
        path = self.folder / f"{stamp}_{_UNSAFE.sub('_', event.kind)}_{self._seq}.jpg"
        try:
            path.write_bytes(data.tobytes())
        except OSError as exc:
            raise EdgecamError(f"cannot write a snapshot: {exc.strerror}", path=path, fix="check the disk") from None
        self._files.append((path, len(data)))
        self._bytes += len(data)
        self.saved += 1
        self._prune()
        return path

    def _prune(self) -> None:
        while self._files and (len(self._files) > self.max_count or self._bytes > self.max_bytes):
            path, size = self._files.popleft()
            path.unlink(missing_ok=True)
            self._bytes -= size
            self.pruned += 1

    @property
    def count(self) -> int:
        return len(self._files)

    @property
    def bytes(self) -> int:
        return self._bytes
