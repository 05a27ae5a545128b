"""OpenCV DNN on the CPU: a third consumer of the ONNX file, independent of ONNX Runtime and OpenVINO.

OpenCV 5 reads with its new graph engine (`ENGINE_AUTO`); the ORT engine it can also wrap is never chosen, since
that would not be an independent check. AUTO is meant to fall back to the classic importer, but OpenCV 5.0's new
engine fails on QDQ (INT8) graphs with an assertion (`bufidx >= 0` in `argTensor`) that AUTO lets through, so a
failed read is retried on `ENGINE_CLASSIC`, which runs them. OpenCV 4.x has only the classic importer, pinned to
the OpenCV backend and CPU target. Tested with OpenCV 5.0: our opset-18, dynamic-batch exports of the classifier
and the detector, and QDQ models.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.backends import register_backend
from edgecam.runtime.backends.base import Backend, as_input
from edgecam.runtime.errors import EdgecamError

FIX = "use --backend onnxruntime or openvino, or upgrade opencv-python-headless"


def _reason(exc: BaseException) -> str:
    """The message of a cv2.error without its C++ source location and function name."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    found = re.search(r"error: \([^)]*\) (.*?)(?: in function '[^']*')?$", text)
    return found.group(1) if found else text


def _read(path: Path) -> tuple[Any, str]:
    """(net, engine used): the new engine, else the classic one; an error names both reasons."""
    import cv2

    if not hasattr(cv2.dnn, "ENGINE_AUTO"):  # OpenCV 4.x
        try:
            net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise EdgecamError(
                f"OpenCV {cv2.__version__} DNN cannot read the model: {_reason(exc)}", path, FIX
            ) from None
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)  # the new engine is CPU-only and warns when given this
        return net, "classic"
    try:
        return cv2.dnn.readNetFromONNX(str(path), cv2.dnn.ENGINE_AUTO), "auto"
    except cv2.error as exc:
        first = _reason(exc)
    try:
        return cv2.dnn.readNetFromONNX(str(path), cv2.dnn.ENGINE_CLASSIC), f"classic (new engine: {first})"
    except cv2.error as exc:
        raise EdgecamError(
            f"OpenCV {cv2.__version__} DNN cannot read the model: {first}; classic engine: {_reason(exc)}", path, FIX
        ) from None


@register_backend
class OpenCvBackend(Backend):
    name = "opencv"
    formats = ("onnx",)

    def load(
        self,
        path: Path,
        threads: int | None = None,
        precision: str = "fp32",
        device: str = "CPU",
        mode: str = "latency",
        streams: int | None = None,
    ) -> None:
        import cv2

        if device.upper() != "CPU":
            raise EdgecamError(f"the opencv backend runs on the CPU only, not {device!r}", fix="use device CPU")
        self.net, self._engine = _read(Path(path))
        if threads:
            cv2.setNumThreads(int(threads))  # process-wide: it also sets the threads of cv2.resize in preprocessing
        self.output_names = tuple(self.net.getUnconnectedOutLayersNames())  # our models have one output
        self._path, self._precision, self._version = Path(path), precision, cv2.__version__

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        import cv2

        self.net.setInput(as_input(batch))
        try:
            outputs = list(self.net.forward(self.output_names))
        except cv2.error as exc:
            raise EdgecamError(
                f"OpenCV DNN failed to run the model: {_reason(exc)}", path=self._path, fix=FIX
            ) from None
        # A damaged graph can leave an output unconnected: OpenCV then returns None instead of raising.
        missing = [n for n, out in zip(self.output_names, outputs, strict=True) if not isinstance(out, np.ndarray)]
        if missing or not outputs:
            raise EdgecamError(
                f"OpenCV DNN produced no output {missing or ''}: the model graph is broken",
                path=self._path,
                fix="check the file with `edgecam verify` and re-export or re-copy the bundle",
            )
        return outputs

    def info(self) -> dict[str, Any]:
        import cv2

        return {
            "backend": self.name,
            "version": self._version,
            "device": "CPU",
            "engine": self._engine,
            "threads": cv2.getNumThreads(),
            "precision": self._precision,
        }
