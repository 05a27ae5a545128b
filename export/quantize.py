"""INT8 variants: NNCF post-training quantization of the OpenVINO IR, ONNX Runtime static QDQ (u8s8) of the ONNX file.

Both calibrate on frames from the training split through the shared preprocessing, so the activation ranges are the
ones the camera produces. Detectors keep their final head convolutions (the 1x1 convs whose outputs form `preds`) in
float, found by walking back from the outputs, not by name: a cheap guard for the box log-distances and class logits,
though on the retail detector it measured no mAP difference either way.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.imagefolder import read_image, scan
from edgecam.runtime.preprocess import PreprocessSpec, preprocess

# Ops that carry weights and run in INT8 when quantized; everything else is data movement or elementwise.
OV_COMPUTE = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")
ONNX_COMPUTE = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# NNCF's default for CNNs (symmetric activations). MIXED (asymmetric) was within noise on mAP (+0.3 points) and
# about 5 % slower on the retail ecdet_s; asymmetric ranges pay off for non-ReLU activations.
OV_PRESET = "performance"
_LOW_BIT = ("i8", "u8", "i4", "u4")
ONNX_SCHEME = {
    "format": "QDQ",
    "preset": "u8s8",
    "activations": "uint8 asymmetric",
    "weights": "int8 symmetric per-channel",
    "ranges": "min/max, moving average over frames",
}


@dataclass
class CalibrationSet:
    """Frames for calibration, read lazily: a few hundred decoded frames at 640 px would hold gigabytes."""

    spec: PreprocessSpec
    paths: list[Path]
    source: str  # dataset path, or "random" when there is no data
    split: str | None
    random_count: int = 0

    def __len__(self) -> int:
        return len(self.paths) if self.paths else self.random_count

    def frame(self, index: int) -> np.ndarray:
        """Float32 [1, 3, H, W] through the shared preprocessing."""
        if self.paths:
            image = read_image(self.paths[index])
        else:
            rng = np.random.default_rng(index)
            image = rng.integers(0, 256, (self.spec.height, self.spec.width, 3), dtype=np.uint8)
        return preprocess(image, self.spec)[0][None]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.frame(i) for i in range(len(self)))

    def describe(self) -> dict[str, Any]:
        return {"frames": len(self), "source": self.source, "split": self.split}


def load_calibration(
    task: str, spec: PreprocessSpec, class_names: Sequence[str], data: str | Path | None, n: int, seed: int = 0
) -> CalibrationSet:
    """`n` frames drawn (seeded) from the training split; random frames, with a warning, when there is no data."""
    if n < 1:
        raise EdgecamError(f"--calib must be at least 1, got {n}")
    if not data:
        print("warning: no --data and the checkpoint's data is gone: INT8 calibrates on random frames", file=sys.stderr)
        return CalibrationSet(spec, [], "random", None, random_count=n)
    if task == "classify":
        root = Path(data)
        split = "train" if (root / "train").is_dir() else None
        paths = [p for p, _ in scan(root / split if split else root, tuple(class_names)).samples]
    else:
        from edgecam.train.detection.datasets import load_detection_data

        try:
            det, split = load_detection_data(data, "train"), "train"
        except EdgecamError:  # a COCO file or a data.yaml without a train split: calibrate on what there is
            det, split = load_detection_data(data, "val"), "val"
        paths = [s.path for s in det.samples]
    random.Random(seed).shuffle(paths)
    chosen, bad = [], 0
    for path in paths:
        if len(chosen) == n:
            break
        try:
            read_image(path)
            chosen.append(path)
        except EdgecamError:
            bad += 1
    if bad:
        print(f"warning: skipped {bad} unreadable calibration image(s)", file=sys.stderr)
    if not chosen:
        raise EdgecamError("no readable calibration images", path=data, fix="check the dataset files")
    return CalibrationSet(spec, chosen, str(data), split)


# ------------------------------------------------------------------------------------------------- graph


def _heads(outputs: list[Any], inputs_of: Callable[[Any], list[Any]], kind: Callable[[Any], str], compute) -> list:
    """Walk back from the outputs through data-movement ops; the first compute op on every path is a head.

    Nodes are given as (unique name, node): OpenVINO hands out a new Python wrapper per access, so no `id()`.
    """
    heads, seen, stack = [], set(), list(outputs)
    while stack:
        for key, src in inputs_of(stack.pop()[1]):
            if key not in seen:
                seen.add(key)
                (heads if kind(src) in compute else stack).append((key, src))
    return [node for _, node in heads]


def ov_head_ops(model: Any) -> list[str]:
    """Friendly names of the compute ops whose outputs reach the model outputs without another compute op."""

    def inputs_of(node: Any) -> list[tuple[str, Any]]:
        srcs = [i.get_source_output().get_node() for i in node.inputs()]
        return [(s.get_name(), s) for s in srcs if s.get_type_name() not in ("Constant", "Parameter")]

    results = [(r.get_name(), r) for r in model.get_results()]
    heads = _heads(results, inputs_of, lambda n: n.get_type_name(), OV_COMPUTE)
    return sorted(n.get_friendly_name() for n in heads)


def onnx_head_nodes(proto: Any) -> list[str]:
    """The same walk on an ONNX graph: names of the last Conv/MatMul/Gemm nodes before the outputs."""
    producer = {out: node for node in proto.graph.node for out in node.output}
    outputs = [producer[o.name] for o in proto.graph.output if o.name in producer]

    def inputs_of(node: Any) -> list[tuple[str, Any]]:
        return [(i, producer[i]) for i in node.input if i in producer]

    heads = _heads([(n.name, n) for n in outputs], inputs_of, lambda n: n.op_type, ONNX_COMPUTE)
    return sorted({n.name for n in heads} | {n.name for n in outputs if n.op_type in ONNX_COMPUTE})


def _int8_weights(op: Any) -> bool:
    """Whether the weights of `op` are quantized: a FakeQuantize or an 8/4-bit constant on the weight path.

    The activation side is no guide: NNCF may put an op's input quantizer before a ReduceMean or a Reshape.
    """
    stack, depth = [op.input(1).get_source_output().get_node()], 0
    while stack and depth < 16:
        node, depth = stack.pop(), depth + 1
        kind = node.get_type_name()
        if kind == "FakeQuantize" or (
            kind == "Constant" and node.get_output_element_type(0).get_type_name() in _LOW_BIT
        ):
            return True
        stack += [i.get_source_output().get_node() for i in node.inputs()]
    return False


def ov_float_ops(model: Any) -> list[str]:
    """Friendly names of the compute ops of a quantized IR whose weights stayed in float."""
    ops = model.get_ordered_ops()
    return sorted(op.get_friendly_name() for op in ops if op.get_type_name() in OV_COMPUTE and not _int8_weights(op))


def onnx_names_for(ov_names: Sequence[str], proto: Any) -> tuple[list[str], list[str]]:
    """Map IR op names to ONNX node names (the IR keeps the ONNX name, plus a suffix such as `/WithoutBiases`)."""
    known = {n.name for n in proto.graph.node}
    found, missing = [], []
    for name in ov_names:
        base = name if name in known else name.split("/")[0]
        (found if base in known else missing).append(base if base in known else name)
    return sorted(set(found)), missing


# ---------------------------------------------------------------------------------------------- quantize


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Quantizers draw progress bars on stdout, where `--json` promises one JSON document: they go to stderr. Their
    info lines are cut, as is ORT's advice to pre-process (it left our CNN graphs unchanged and litters the cwd)."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        logger.setLevel(level)


@dataclass
class AccuracyControl:
    """What accuracy-controlled quantization validates on: frames, and the task metric of raw outputs for some."""

    frames: np.ndarray
    score: Callable[[np.ndarray, list[int]], float]  # (raw outputs, frame indices) -> top-1 or mAP@0.5, 0..1
    max_drop: float  # absolute, 0..1


def quantize_openvino(
    model: Any,
    calib: CalibrationSet,
    ignored: Sequence[str] = (),
    preset: str = OV_PRESET,
    accuracy: AccuracyControl | None = None,
) -> tuple[Any, dict[str, Any]]:
    """NNCF PTQ of an FP32 `ov.Model`; with `accuracy`, the most sensitive ops go back to float until the drop fits."""
    import nncf
    from nncf.common.logging import nncf_logger

    dataset = nncf.Dataset(list(range(len(calib))), calib.frame)
    common: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(preset),
        "target_device": nncf.TargetDevice.CPU,
        "subset_size": len(calib),
        "ignored_scope": nncf.IgnoredScope(names=list(ignored)) if ignored else None,
    }
    with _quiet(nncf_logger):
        if accuracy is None:
            quantized = nncf.quantize(model, dataset, **common)
        else:
            frames = accuracy.frames

            def validate(compiled: Any, items: Any) -> float:
                index = [int(i) for i in items]
                raw = [compiled(frames[index[s : s + 16]])[0] for s in range(0, len(index), 16)]
                return float(accuracy.score(np.concatenate(raw), index))

            validation = nncf.Dataset(list(range(len(frames))), lambda i: frames[i : i + 1])
            quantized = nncf.quantize_with_accuracy_control(
                model, dataset, validation, validate, max_drop=accuracy.max_drop, **common
            )
    float_ops = ov_float_ops(quantized)
    info = {
        "tool": f"nncf {nncf.__version__}",
        "preset": preset,
        "ignored_scope": list(ignored),
        "float_layers": float_ops,
        "reverted_layers": sorted(set(float_ops) - set(ignored)) if accuracy else [],
        "max_drop_points": round(accuracy.max_drop * 100, 4) if accuracy else None,
    }
    return quantized, info


def quantize_onnx(
    src: Path, dst: Path, calib: CalibrationSet, metadata: dict[str, Any], exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """ONNX Runtime static QDQ, u8 activations x s8 per-channel weights: the form ORT's CPU kernels run fast.

    Signed activations (s8s8) hit a slow ORT path on x86 (slower than FP32); NNCF's ONNX backend picks int8
    activations wherever a range goes below zero (and its file failed in ORT 1.32's QLinearConv), so ORT's own
    quantizer is used here.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgecam.export.onnx_export import set_metadata

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.frames = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self.frames, None)
            return None if frame is None else {"images": frame}

    with _quiet(logging.getLogger()):
        quantize_static(
            str(src),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=list(exclude),
            # Per-frame ranges averaged, not the extremes of all frames: a few outlier frames otherwise stretch the
            # ranges; on the retail detector the plain min/max cost one class 4.5 points of recall, this 1.8.
            extra_options={"CalibMovingAverage": True},
        )
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]  # the quantizer adds its own keys; keep the file's metadata to edgecam's
    set_metadata(proto, metadata)
    onnx.save(proto, str(dst), save_as_external_data=False)
    return {
        "tool": f"onnxruntime {onnxruntime.__version__} quantize_static",
        **ONNX_SCHEME,
        "ignored_scope": list(exclude),
    }


def onnx_qdq_types(path: Path) -> dict[str, set[str]]:
    """Element types of the QDQ pairs in a quantized ONNX file: what `activations` and `weights` are stored as."""
    import onnx

    proto = onnx.load(str(path))
    init = {i.name: i for i in proto.graph.initializer}
    weight_of = {n.output[0]: n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init}
    kinds: dict[str, set[str]] = {"activations": set(), "weights": set()}
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in init:
            kinds["activations"].add(onnx.TensorProto.DataType.Name(init[node.input[2]].data_type).lower())
        elif node.op_type in ONNX_COMPUTE and len(node.input) > 1 and node.input[1] in weight_of:
            kinds["weights"].add(
                onnx.TensorProto.DataType.Name(init[weight_of[node.input[1]].input[0]].data_type).lower()
            )
    return kinds
