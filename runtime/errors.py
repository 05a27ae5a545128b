"""The one error type users see: what went wrong, with which file, and how to fix it."""

from __future__ import annotations

from pathlib import Path


class EdgecamError(Exception):
    """A user-facing error; the CLI prints it as one line and exits non-zero (never a traceback)."""

    def __init__(self, message: str, path: str | Path | None = None, fix: str | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} ({self.fix})" if self.fix else text
