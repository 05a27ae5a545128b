"""Draw results on a copy of a frame: ROI boxes and a label banner for classifications, boxes for detections.

Pure functions over numpy images (cv2 drawing only): the input image is never modified, so the same frame can
feed the model, the video sink and a live view.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edgecam.runtime.types import Classification, Detections

# Distinct BGR colours, indexed by class id (wraps around for more classes).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (211, 188, 0),
    (209, 99, 0),
    (255, 115, 100),
    (236, 24, 0),
    (255, 56, 132),
    (133, 0, 82),
    (203, 56, 255),
    (255, 149, 200),
)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable colour per class id, so a class looks the same in every frame and every video."""
    return PALETTE[int(class_id) % len(PALETTE)]


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (BGR luma)."""
    b, g, r = bg
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


def _scale(image: np.ndarray) -> tuple[float, int]:
    """Font scale and line thickness that stay readable from 160x120 thumbnails to 4K frames."""
    side = min(image.shape[:2])
    return max(0.35, side / 800.0), max(1, round(side / 400))


def draw_label(
    image: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int], above: bool = True
) -> np.ndarray:
    """Draw `text` on a filled box at `origin` (x, y) in place: above that point if there is room, else below."""
    scale, thick = _scale(image)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    x = int(np.clip(origin[0], 0, max(0, image.shape[1] - tw - 4)))
    y = int(origin[1])
    top = y - th - base - 4 if above and y - th - base - 4 >= 0 else y
    cv2.rectangle(image, (x, top), (x + tw + 4, top + th + base + 4), color, -1)
    cv2.putText(image, text, (x + 2, top + th + 2), FONT, scale, _text_color(color), thick, cv2.LINE_AA)
    return image


def draw_classifications(image: np.ndarray, results: Sequence[Classification]) -> np.ndarray:
    """A copy of `image` with each ROI result boxed and labelled, and whole-frame results as a top banner."""
    out = image.copy()
    scale, thick = _scale(out)
    banner_y = 0
    for res in results:
        color = class_color(res.class_id)
        text = f"{res.label} {res.score:.2f}"
        if res.roi is None:
            draw_label(out, text, (0, banner_y), color, above=False)
            (_, th), base = cv2.getTextSize(text, FONT, scale, thick)
            banner_y += th + base + 4  # several whole-frame results stack downwards
            continue
        x, y, w, h = (int(v) for v in res.roi)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, thick * 2)
        draw_label(out, text, (x, y), color)
    return out


def draw_detections(image: np.ndarray, detections: Detections, class_names: Sequence[str]) -> np.ndarray:
    """A copy of `image` with one box per detection: class name, score and track id when tracked."""
    out = image.copy()
    _, thick = _scale(out)
    for xyxy, score, cid, tid in zip(
        detections.xyxy, detections.scores, detections.class_ids, detections.track_ids, strict=True
    ):
        x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy)
        color = class_color(int(cid))
        name = class_names[cid] if 0 <= cid < len(class_names) else str(int(cid))
        text = f"{name} {score:.2f}" + (f" #{int(tid)}" if tid >= 0 else "")
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick * 2)
        draw_label(out, text, (x1, y1), color)
    return out


def draw_stats(image: np.ndarray, fps: float | None = None, extra: dict[str, str] | None = None) -> np.ndarray:
    """A copy of `image` with a small bottom-left overlay: FPS and any extra `key: value` lines."""
    out = image.copy()
    lines = ([f"FPS {fps:.1f}"] if fps is not None else []) + [f"{k}: {v}" for k, v in (extra or {}).items()]
    scale, thick = _scale(out)
    step = cv2.getTextSize("Ag", FONT, scale, thick)[0][1] * 2 + 4
    y = out.shape[0] - 4 - step * (len(lines) - 1)
    for line in lines:
        cv2.putText(out, line, (4, y), FONT, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, line, (4, y), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += step
    return out
