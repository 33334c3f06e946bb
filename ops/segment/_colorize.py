"""``segment.colorize`` (label map → RGB through a palette) and ``segment.counts`` (pixels per class)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Int, Param
from .._spec import TensorSpec
from ..image._common import jit
from ._common import label_spec, random_labels

__all__ = ["Palette", "colorize", "counts", "voc_palette"]

Colors = tuple[tuple[int, int, int], ...]


@functools.lru_cache(maxsize=1)
def _voc() -> np.ndarray:
    # the PASCAL VOC devkit's colormap: bit k of the class index (k = 0, 1, 2 for r, g, b; then
    # the next three bits, and so on) sets bit 7 - k // 3 of that channel
    out = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c = i
        for j in range(8):
            for ch in range(3):
                out[i, ch] |= ((c >> ch) & 1) << (7 - j)
            c >>= 3
    out.flags.writeable = False
    return out


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map: 256 × 3 uint8 (0 black background, 255 the cream "void")."""
    return _voc()


def palette_array(palette: str | Colors) -> np.ndarray:
    return _voc() if palette == "voc" else np.array(palette, np.uint8).reshape(-1, 3)


@dataclass(frozen=True)
class Palette:
    """A parameter kind: ``"voc"`` or a list of ``[r, g, b]`` colours (0–255), index = class."""

    def check(self, value: Any) -> str | Colors:
        if isinstance(value, str) and value == "voc":
            return "voc"
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, Sequence) and not isinstance(value, str) and 0 < len(value) <= 1 << 16:
            colors = []
            for c in value:
                ok = isinstance(c, Sequence) and len(c) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
                if not ok:
                    raise ValueError(f"expected {self.describe()}; {c!r} is not [r, g, b] with integers 0-255")
                colors.append((int(c[0]), int(c[1]), int(c[2])))
            return tuple(colors)
        raise ValueError(f"expected {self.describe()}, got {value!r}")

    def describe(self) -> str:
        return "'voc' or a list of 1 to 65536 [r, g, b] colours (integers 0-255), one per class"

    def json_schema(self) -> dict[str, Any]:
        rgb = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}, "minItems": 3, "maxItems": 3}
        return {"oneOf": [{"enum": ["voc"]}, {"type": "array", "items": rgb, "minItems": 1, "maxItems": 1 << 16}]}


def _out_of_range(op: str, labels: np.ndarray, n: int, what: str) -> InputError | None:
    bad = (labels < 0) | (labels >= n)
    if not bad.any():
        return None
    value = int(labels[bad][0])
    return InputError(f"{op}: label {value} has no {what} (labels must be 0 to {n - 1}); {int(bad.sum())} pixels are out of range")


def _colorize_reference(labels: np.ndarray, *, palette: str | Colors) -> np.ndarray:
    pal = palette_array(palette)
    error = _out_of_range("segment.colorize", labels, len(pal), f"colour in the palette of {len(pal)}")
    if error is not None:
        raise error
    return pal[labels]


def _colorize_params(rng: np.random.Generator, labels: np.ndarray) -> dict[str, Any]:
    if labels.dtype == np.uint8 or rng.random() < 0.5:
        return {"palette": "voc"} if labels.max() < 256 else {"palette": [[7, 7, 7]] * (int(labels.max()) + 1)}
    n = int(labels.max()) + 1 + int(rng.integers(0, 3))
    return {"palette": rng.integers(0, 256, size=(n, 3)).tolist()}


colorize = Op(
    "segment.colorize",
    doc="""Paint a label map: pixel of class ``i`` → ``palette[i]``, an ``H W 3`` uint8 RGB image.

``palette`` is ``"voc"`` (default: the PASCAL VOC colour map of 256 colours — 0 background
black, 1 aeroplane (128, 0, 0), …, 15 person (192, 128, 128), 255 "void" (224, 224, 192)) or a
list of ``[r, g, b]`` colours (0–255), one per class. A label outside the palette (negative, or
>= its length) is an error naming the label and the palette size — never a wrapped or made-up
colour. Exact.""",
    inputs=[label_spec()],
    outputs=[TensorSpec("image", (np.uint8,), "H W 3", "RGB colours")],
    params=[Param("palette", Palette(), "voc", "'voc' or a list of [r, g, b] colours")],
    reference=_colorize_reference,
    infer=lambda labels, **_: [((labels.shape[0], labels.shape[1], 3), np.dtype(np.uint8))],
    example_inputs=lambda rng, dtype: (random_labels(rng, dtype, int(rng.choice([2, 21, 256]))),),
    example_params=_colorize_params,
)


@jit
def _paint(labels: np.ndarray, pal: np.ndarray, out: np.ndarray) -> int:
    """Paint; the number of pixels whose label is outside the palette (those are left unpainted)."""
    n = pal.shape[0]
    bad = 0
    for i in range(labels.shape[0]):
        for j in range(labels.shape[1]):
            v = labels[i, j]
            if v < 0 or v >= n:
                bad += 1
                continue
            out[i, j, 0] = pal[v, 0]
            out[i, j, 1] = pal[v, 1]
            out[i, j, 2] = pal[v, 2]
    return bad


@colorize.kernel("cpu")
def _colorize_cpu(labels: np.ndarray, *, out: np.ndarray, palette: str | Colors) -> None:
    pal = palette_array(palette)
    if _paint(labels, pal, out):
        error = _out_of_range("segment.colorize", labels, len(pal), f"colour in the palette of {len(pal)}")
        assert error is not None
        raise error


def _counts_reference(labels: np.ndarray, *, num_classes: int) -> np.ndarray:
    error = _out_of_range("segment.counts", labels, num_classes, f"count: num_classes is {num_classes}")
    if error is not None:
        raise error
    return np.bincount(labels.ravel().astype(np.int64), minlength=num_classes).astype(np.int64)


def _counts_inputs(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    return (random_labels(rng, dtype, int(rng.choice([1, 3, 21, 150]))),)


counts = Op(
    "segment.counts",
    doc="""Pixels per class: ``counts[i]`` = the number of pixels labelled ``i``, ``i < num_classes``
(as ``torch.bincount(labels.flatten(), minlength=num_classes)``). int64 ``[num_classes]``; the
counts sum to ``H × W``. A label outside ``[0, num_classes)`` is an error naming the label (a map
from another model, or a wrong ``num_classes``). Exact.""",
    inputs=[label_spec()],
    outputs=[TensorSpec("counts", (np.int64,), "num_classes", "pixels of each class")],
    params=[Param("num_classes", Int(min=1, max=1 << 20), doc="the number of classes (length of counts)")],
    reference=_counts_reference,
    infer=lambda labels, *, num_classes: [((num_classes,), np.dtype(np.int64))],
    example_inputs=_counts_inputs,
    example_params=lambda rng, labels: {"num_classes": int(labels.max()) + 1 + int(rng.integers(0, 4))},
)


@jit
def _count(labels: np.ndarray, out: np.ndarray) -> int:
    n = out.shape[0]
    out[:] = 0
    bad = 0
    for i in range(labels.shape[0]):
        for j in range(labels.shape[1]):
            v = labels[i, j]
            if v < 0 or v >= n:
                bad += 1
            else:
                out[v] += 1
    return bad


@counts.kernel("cpu")
def _counts_cpu(labels: np.ndarray, *, out: np.ndarray, num_classes: int) -> None:
    if _count(labels, out):
        error = _out_of_range("segment.counts", labels, num_classes, f"count: num_classes is {num_classes}")
        assert error is not None
        raise error
