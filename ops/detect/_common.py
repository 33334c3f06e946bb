"""What the detection ops share: box specs and dtypes, input checks, random boxes for the kit."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError
from .._spec import TensorSpec

__all__ = [
    "BOX_DTYPES",
    "CLASS_DTYPES",
    "FORMATS",
    "SIZE_DTYPES",
    "boxes_spec",
    "check_finite_positive",
    "image_size_of",
    "random_boxes",
    "random_size",
    "size_spec",
]

#: dtypes of boxes and scores (torchvision's NMS works on float32 and float64 alike).
BOX_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: dtypes of class ids.
CLASS_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
#: dtypes of an ``image_size`` input (height, width).
SIZE_DTYPES = (np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float32), np.dtype(np.float64))
#: box formats, as torchvision's ``box_convert`` names them.
FORMATS = ("xyxy", "xywh", "cxcywh")

ShapeDtypes = list[tuple[tuple[int, ...], np.dtype]]


def boxes_spec(name: str = "boxes", shape: str = "N 4", doc: str = "", dtypes: tuple[Any, ...] | None = BOX_DTYPES) -> TensorSpec:
    return TensorSpec(name, dtypes, shape, doc or "boxes, one row of 4 coordinates each")


def size_spec(name: str = "image_size") -> TensorSpec:
    return TensorSpec(name, SIZE_DTYPES, "2", "[height, width] of the image, in pixels")


def check_finite_positive(op_name: str, what: str, values: np.ndarray) -> None:
    v = np.asarray(values, np.float64)
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise InputError(f"{op_name}: {what} must be finite and positive, got {v.tolist()}")


def image_size_of(op_name: str, image_size: np.ndarray) -> tuple[float, float]:
    """``(height, width)`` from an ``image_size`` input, or an ``InputError`` naming the op."""
    check_finite_positive(op_name, "image_size [height, width]", image_size)
    return float(image_size[0]), float(image_size[1])


def random_boxes(rng: np.random.Generator, n: int, dtype: Any, *, extent: float = 640.0, fmt: str = "xyxy", degenerate: bool = True) -> np.ndarray:
    """``n`` random boxes inside ``[0, extent]`` of sides 0 to about half the extent, in ``fmt``.

    With ``degenerate`` some are zero-width, zero-height or inverted (x2 < x1), as bad input is.
    """
    x1 = rng.uniform(0, extent, n)
    y1 = rng.uniform(0, extent, n)
    w = rng.uniform(0, extent / 2, n) * rng.uniform(0.1, 1, n)
    h = rng.uniform(0, extent / 2, n) * rng.uniform(0.1, 1, n)
    if degenerate and n:
        pick = rng.random(n)
        w[pick < 0.05] = 0
        h[(pick >= 0.05) & (pick < 0.1)] = 0
        w[(pick >= 0.1) & (pick < 0.13)] *= -1
    if fmt == "xyxy":
        out = np.stack([x1, y1, x1 + w, y1 + h], 1)
    elif fmt == "xywh":
        out = np.stack([x1, y1, w, h], 1)
    else:
        out = np.stack([x1 + w / 2, y1 + h / 2, w, h], 1)
    return out.astype(dtype)


def random_size(rng: np.random.Generator) -> np.ndarray:
    """A random ``image_size`` input: [height, width] in one of the accepted dtypes."""
    dt = SIZE_DTYPES[int(rng.integers(len(SIZE_DTYPES)))]
    hw = rng.integers(1, 2000, 2)
    return (hw + (rng.random(2) if dt.kind == "f" and rng.random() < 0.5 else 0)).astype(dt)
