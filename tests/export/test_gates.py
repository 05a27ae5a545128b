"""INT8 accuracy gates as tables: the boundaries, and a class collapse that a fine overall mAP hides."""

import pytest

from edgecam.export import gates
from edgecam.export.gates import classifier_gate, detector_gate, evaluate_gate


@pytest.mark.parametrize(
    ("before", "after", "passed", "drop"),
    [
        (0.900, 0.900, True, 0.0),
        (0.900, 0.895, True, 0.5),  # exactly the allowed 0.5 point (0.9 - 0.895 is 0.50000000000001 in floats)
        (0.900, 0.8949, False, 0.51),
        (0.900, 0.894, False, 0.6),
        (0.900, 0.950, True, -5.0),  # INT8 better than FP32 on these frames
        (1.000, 0.333, False, 66.7),
    ],
)
def test_classifier_gate_table(before, after, passed, drop):
    gate = classifier_gate("onnx-int8", {"top1": before}, {"top1": after})
    assert gate.passed is passed
    assert gate.drop == pytest.approx(drop, abs=1e-3)
    assert f"{before:.4f} -> {after:.4f}" in gate.describe() and "onnx-int8" in gate.describe()


def test_classifier_gate_without_labels_does_not_pass():
    gate = classifier_gate("openvino-int8", {}, {})
    assert not gate.passed and gate.drop is None
    assert "not evaluated" in gate.describe()


def _det(map50, recalls):
    """Detector metrics as the export task produces them; None = no ground truth of that class."""
    return {"map50": map50, "per_class": {name: {"recall50": r} for name, r in recalls.items()}}


FINE = {"person": 0.90, "car": 0.80, "bike": 0.70}


@pytest.mark.parametrize(
    ("before", "after", "passed", "failed_classes"),
    [
        (_det(0.80, FINE), _det(0.80, FINE), True, set()),
        (_det(0.80, FINE), _det(0.79, FINE), True, set()),  # exactly 1 point of mAP@0.5
        (_det(0.80, FINE), _det(0.789, FINE), False, set()),
        (_det(0.80, FINE), _det(0.80, {**FINE, "bike": 0.67}), True, set()),  # exactly 3 points of recall
        (_det(0.80, FINE), _det(0.80, {**FINE, "bike": 0.669}), False, {"bike"}),
        # mAP even improves, yet one class lost most of its recall: the gate must catch it
        (_det(0.80, FINE), _det(0.81, {"person": 0.95, "car": 0.85, "bike": 0.20}), False, {"bike"}),
        (_det(0.80, FINE), _det(0.80, {"person": 0.90, "car": 0.80}), False, {"bike"}),  # class vanished: 0 recall
        (_det(0.80, {**FINE, "bike": None}), _det(0.80, {**FINE, "bike": None}), True, set()),  # no GT: skipped
        (_det(None, {"bike": None}), _det(None, {"bike": None}), True, set()),  # nothing to detect at all
    ],
)
def test_detector_gate_table(before, after, passed, failed_classes):
    gate = detector_gate("openvino-int8", before, after)
    assert gate.passed is passed, gate.describe()
    assert set(gate.failed_classes) == failed_classes
    for name in failed_classes:
        assert name in gate.describe() and "recall50" in gate.describe()


def test_detector_gate_names_the_numbers_of_a_collapsed_class():
    gate = detector_gate("onnx-int8", _det(0.80, FINE), _det(0.81, {**FINE, "bike": 0.20}))
    assert gate.failed_classes == {"bike": (0.70, 0.20)}
    assert "map50 0.8000 -> 0.8100" in gate.describe() and "bike 0.700 -> 0.200" in gate.describe()
    record = gate.to_dict()
    assert record["passed"] is False and record["failed_classes"] == {"bike": {"before": 0.70, "after": 0.20}}


def test_thresholds_are_read_at_call_time(monkeypatch):
    monkeypatch.setattr(gates, "TOP1_MAX_DROP", -1.0)  # not even a perfect copy passes
    assert not evaluate_gate("classify", "v", {"top1": 0.9}, {"top1": 0.9}).passed
    monkeypatch.setattr(gates, "MAP50_MAX_DROP", 5.0)
    assert evaluate_gate("detect", "v", _det(0.80, FINE), _det(0.76, FINE)).passed


def test_unknown_task_has_no_gate():
    with pytest.raises(ValueError, match="no accuracy gate"):
        evaluate_gate("segment", "v", {}, {})
