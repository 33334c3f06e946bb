"""The ``detector`` model: saturated blobs of one RGB image as boxes.

The scene's background is grey (noisy, but its channels move together), the objects are strongly
coloured. So: saturation ``max(R, G, B) - min(R, G, B)`` per pixel, a threshold, a morphological
opening that removes specks (JPEG ringing, noise), connected components, and one box per component
at least ``MIN_AREA`` pixels large. Deterministic: the same image always gives the same boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

#: saturation (0..255) above which a pixel belongs to an object; a grey background stays far below
THRESHOLD = 70
#: components smaller than this many pixels are noise, not objects
MIN_AREA = 64


def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` H W 3 uint8 → ``boxes`` [n, 4] float32 (x1, y1, x2, y2) and ``scores`` [n] float32,
    top-to-bottom then left-to-right."""
    rgb = image.astype(np.int16)
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    mask = (saturation > THRESHOLD).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    rows = [s for s in stats[1:] if s[cv2.CC_STAT_AREA] >= MIN_AREA]  # stats[0] is the background
    rows.sort(key=lambda s: (int(s[cv2.CC_STAT_TOP]), int(s[cv2.CC_STAT_LEFT])))
    boxes = np.array([[s[0], s[1], s[0] + s[2], s[1] + s[3]] for s in rows], np.float32).reshape(-1, 4)
    scores = np.array([s[cv2.CC_STAT_AREA] / (s[2] * s[3]) for s in rows], np.float32)
    return boxes, scores


def build() -> Callable[..., dict[str, Any]]:
    def run(image: Any) -> dict[str, Any]:
        boxes, scores = detect(np.ascontiguousarray(image.numpy()))  # a torch uint8 tensor arrives
        return {"boxes": boxes, "scores": scores}
    return run
