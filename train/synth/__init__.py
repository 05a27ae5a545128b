"""Built-in synthetic scenes and datasets: seeded, deterministic, pure numpy + OpenCV (no torch).

``synth_classification``/``synth_detection`` write datasets, ``render_shelf``/``render_street`` draw one
labelled scene, ``make_shelf_video``/``make_security_video`` write demo videos with ground truth.
"""

from .draw import Box
from .retail import RETAIL_CLASSES, ShelfScene, Slot, render_shelf
from .security import SECURITY_CLASSES, StreetScene, render_street
from .video import SecurityVideo, ShelfVideo, make_security_video, make_shelf_video
from .writer import SCENARIOS, synth_classification, synth_detection

__all__ = [
    "RETAIL_CLASSES",
    "SCENARIOS",
    "SECURITY_CLASSES",
    "Box",
    "SecurityVideo",
    "ShelfScene",
    "ShelfVideo",
    "Slot",
    "StreetScene",
    "make_security_video",
    "make_shelf_video",
    "render_shelf",
    "render_street",
    "synth_classification",
    "synth_detection",
]
