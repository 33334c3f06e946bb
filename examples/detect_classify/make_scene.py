"""Synthetic scenes for the detect-then-classify example: coloured rectangles on a noisy grey
background, encoded as real JPEG bytes.

    python examples/detect_classify/make_scene.py --seed 7 --count 5 --out scene.jpg

``make_scene(seed)`` returns the JPEG and what was drawn (each rectangle's box and colour name), so
a test can check a detector's answer against the truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

__all__ = ["COLOURS", "DrawnObject", "Scene", "main", "make_scene"]

#: the colours drawn (RGB), named as the classifier's labels.txt names them
COLOURS = {"red": (215, 35, 35), "green": (40, 185, 50), "blue": (35, 55, 210), "yellow": (225, 215, 40)}
#: rectangle sides in pixels, and the gap kept between two rectangles (and to the border)
MIN_SIDE, MAX_SIDE, GAP = 20, 60, 8


class DrawnObject(NamedTuple):
    box: tuple[int, int, int, int]  #: x1, y1, x2, y2: pixel edges, the rectangle fills x1 <= x < x2
    label: str


class Scene(NamedTuple):
    jpeg: bytes
    objects: list[DrawnObject]
    height: int
    width: int


def _place(rng: np.random.Generator, count: int, height: int, width: int) -> list[tuple[int, int, int, int]] | None:
    """``count`` rectangles that keep ``GAP`` from each other and the border, or None if they did not fit."""
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(count * 200):
        if len(boxes) == count:
            break
        w, h = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, 2))
        x1 = int(rng.integers(GAP, width - GAP - w + 1))
        y1 = int(rng.integers(GAP, height - GAP - h + 1))
        box = (x1, y1, x1 + w, y1 + h)
        if all(box[0] >= b[2] + GAP or b[0] >= box[2] + GAP or box[1] >= b[3] + GAP or b[1] >= box[3] + GAP for b in boxes):
            boxes.append(box)
    return boxes if len(boxes) == count else None


def make_scene(seed: int, count: int | None = None, quality: int = 90) -> Scene:
    """A scene of ``count`` rectangles (default: 0 to 8, from the seed) of random colours, sizes and
    places on a noisy grey background of random size; the same seed gives the same scene."""
    rng = np.random.default_rng(seed)
    if count is None:
        count = int(rng.integers(0, 9))
    # big enough that the rectangles fit easily: about four times their largest area each
    height = int(rng.integers(160, 240)) + 12 * count
    width = int(rng.integers(200, 320)) + 16 * count
    boxes = None
    while boxes is None:
        boxes = _place(rng, count, height, width)
        height, width = height + 40, width + 40  # crowded: grow the canvas and try again
    height, width = height - 40, width - 40

    # grey with a gentle gradient and noise that moves the three channels together (so it stays grey),
    # plus a little noise per channel: the background has texture but no colour
    grey = rng.uniform(70, 180) + np.linspace(-20, 20, width)[None, :] * rng.uniform(-1, 1)
    noise = rng.normal(0, 10, (height, width))
    canvas = (grey + noise)[..., None] + rng.normal(0, 3, (height, width, 3))
    names = list(COLOURS)
    objects = []
    for x1, y1, x2, y2 in boxes:
        label = names[int(rng.integers(len(names)))]
        colour = np.array(COLOURS[label], np.float64) + rng.integers(-20, 21, 3)
        canvas[y1:y2, x1:x2] = colour + rng.normal(0, 6, (y2 - y1, x2 - x1, 3))
        objects.append(DrawnObject((x1, y1, x2, y2), label))
    rgb = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode could not encode the scene as JPEG")
    return Scene(encoded.tobytes(), objects, height, width)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic scene (coloured rectangles) as a JPEG file.")
    parser.add_argument("--seed", type=int, default=0, help="the scene's random seed (default 0)")
    parser.add_argument("--count", type=int, default=None, help="how many rectangles (default: 0 to 8, from the seed)")
    parser.add_argument("--out", type=Path, default=Path("scene.jpg"), help="where to write it (default scene.jpg)")
    args = parser.parse_args(argv)
    scene = make_scene(args.seed, args.count)
    args.out.write_bytes(scene.jpeg)
    print(f"{args.out}: {scene.width}x{scene.height}, {len(scene.objects)} objects")
    for obj in scene.objects:
        print(f"  box {obj.box} {obj.label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
