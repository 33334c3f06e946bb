"""A synthetic but non-trivial image dataset: one shape per 64×64 JPEG.

Six classes — circle, ring, square, triangle, star, cross — each drawn with a random colour,
size, position and rotation over a random background (a colour gradient plus noise), then
encoded as a real JPEG at a random quality. Every image comes from its own seed, so a dataset is
reproducible from ``(seed, index)`` and fresh images are one new seed away.

    jpeg, label = make_image(np.random.default_rng(7))
    images, labels = make_dataset(1000, seed=0)
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["CLASSES", "SIZE", "make_dataset", "make_image"]

CLASSES = ("circle", "ring", "square", "triangle", "star", "cross")
SIZE = 64


def _polygon(center: np.ndarray, radius: float, angle: float, points: int, inner: float | None = None) -> np.ndarray:
    """A regular polygon (or a star, with an inner radius) as int32 vertices."""
    count = points * 2 if inner is not None else points
    t = angle + np.arange(count) * 2 * math.pi / count
    r = np.full(count, radius) if inner is None else np.where(np.arange(count) % 2 == 0, radius, inner)
    return np.stack([center[0] + r * np.cos(t), center[1] + r * np.sin(t)], axis=1).round().astype(np.int32)


def _draw(canvas: np.ndarray, label: int, center: np.ndarray, radius: float, angle: float, color: tuple[int, ...]) -> None:
    name = CLASSES[label]
    c = tuple(int(v) for v in center.round())
    if name == "circle":
        cv2.circle(canvas, c, int(round(radius)), color, -1, cv2.LINE_AA)
    elif name == "ring":
        cv2.circle(canvas, c, int(round(radius * 0.8)), color, max(3, int(radius * 0.35)), cv2.LINE_AA)
    elif name == "square":
        cv2.fillPoly(canvas, [_polygon(center, radius, angle, 4)], color, cv2.LINE_AA)
    elif name == "triangle":
        cv2.fillPoly(canvas, [_polygon(center, radius, angle, 3)], color, cv2.LINE_AA)
    elif name == "star":
        cv2.fillPoly(canvas, [_polygon(center, radius, angle, 5, inner=radius * 0.45)], color, cv2.LINE_AA)
    else:  # cross: two bars
        for a in (angle, angle + math.pi / 2):
            d = np.array([math.cos(a), math.sin(a)]) * radius
            p, q = (center - d).round().astype(int), (center + d).round().astype(int)
            cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, max(3, int(radius * 0.4)), cv2.LINE_AA)


def make_image(rng: np.random.Generator, label: int | None = None) -> tuple[bytes, int]:
    """One random image (JPEG bytes) and its class index."""
    label = int(rng.integers(len(CLASSES))) if label is None else label
    base = rng.uniform(0, 255, 3)
    ramp = rng.uniform(-60, 60, 3)
    t = np.linspace(0, 1, SIZE)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, SIZE)[:, None, None]
    canvas = base + ramp * t + rng.normal(0, rng.uniform(2, 14), (SIZE, SIZE, 3))
    canvas = np.clip(canvas, 0, 255).astype(np.uint8).copy()
    while True:  # a shape colour that stands out from the background
        color = rng.uniform(0, 255, 3)
        if np.abs(color - base).sum() > 150:
            break
    radius = rng.uniform(11, 24)
    center = rng.uniform(radius + 3, SIZE - radius - 3, 2)
    _draw(canvas, label, center, radius, rng.uniform(0, 2 * math.pi), tuple(int(v) for v in color))
    ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
    assert ok
    return jpeg.tobytes(), label


def make_dataset(count: int, seed: int) -> tuple[list[bytes], list[int]]:
    """``count`` images, balanced over the classes, each from the seed ``(seed, index)``."""
    images, labels = [], []
    for i in range(count):
        jpeg, label = make_image(np.random.default_rng([seed, i]), label=i % len(CLASSES))
        images.append(jpeg)
        labels.append(label)
    return images, labels
