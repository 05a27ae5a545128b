"""The detector resumes exactly too: weights, optimizer, schedule, shuffling and the closing of mosaic continue as
if never stopped. (Over three short epochs the EMA is still within the tolerance of the trained weights, so this
does not check the EMA's own state.)"""

import pytest
import torch

from edgecam.train.config import load_config
from edgecam.train.detection.trainer import train_detector
from edgecam.train.loop import EpochTracker


@pytest.fixture(scope="module")
def det_data(tmp_path_factory):
    from edgecam.train.synth import synth_detection

    root = tmp_path_factory.mktemp("det")
    synth_detection("security", root / "data", 10, seed=3, imgsz=(256, 192))
    return root / "data" / "data.yaml"


def _cfg(data, out):
    return load_config(
        None,
        dict(task="detect", data=str(data), out=str(out), model="test_det_tiny", imgsz=64, epochs=3, batch=4,
             close_mosaic=1, patience=0, progress=False),
    )  # fmt: skip


def test_an_interrupted_detector_run_resumes_exactly(det_data, tmp_path, monkeypatch):
    whole = train_detector(_cfg(det_data, tmp_path / "whole"))
    real = EpochTracker.should_stop
    calls = {"n": 0}

    def interrupt(self, start, history):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, start, history)

    monkeypatch.setattr(EpochTracker, "should_stop", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_detector(_cfg(det_data, tmp_path / "cut"))
    monkeypatch.setattr(EpochTracker, "should_stop", real)
    resumed = train_detector(_cfg(det_data, tmp_path / "cut"), resume=True)
    assert resumed.epochs_run == whole.epochs_run == 3
    a = torch.load(whole.last, weights_only=True)["state_dict"]
    b = torch.load(resumed.last, weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    assert [h["map50"] for h in whole.history] == pytest.approx([h["map50"] for h in resumed.history], abs=1e-6)
