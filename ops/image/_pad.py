"""Padding: constant, edge and reflect borders, and the gather kernel crop shares with pad.

Both crop and pad are "gathers": output row ``y`` reads source row ``ys[y]`` (``-1``: fill) and
output column ``x`` reads source column ``xs[x]``. The index maps are cheap NumPy; one Numba
kernel moves the pixels, seeing every dtype as the unsigned integer of its width so it compiles
once per item size.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from .._device import Meta
from .._errors import InputError
from .._op import Op
from .._params import Choice, Floats, Param
from ._common import image_spec, jit

__all__ = ["Padding", "gather", "pad", "pad_fill", "source_index"]

_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@jit
def _gather_kernel(src: np.ndarray, dst: np.ndarray, ys: np.ndarray, xs: np.ndarray, fill: np.ndarray) -> None:
    oh, ow, c = dst.shape
    for y in range(oh):
        sy = ys[y]
        for x in range(ow):
            sx = xs[x]
            if sy < 0 or sx < 0:
                for k in range(c):
                    dst[y, x, k] = fill[k]
            else:
                for k in range(c):
                    dst[y, x, k] = src[sy, sx, k]


def gather(image: np.ndarray, out: np.ndarray, ys: np.ndarray, xs: np.ndarray, fill: np.ndarray) -> None:
    """``out[y, x] = image[ys[y], xs[x]]``, or ``fill`` (one value per channel) where an index is -1.

    Writes every element of ``out``; ``fill`` has the image's dtype.
    """
    bits = _BITS[image.dtype.itemsize]
    _gather_kernel(image.view(bits), out.view(bits), ys, xs, np.ascontiguousarray(fill).view(bits))


def source_index(n: int, before: int, size: int, mode: str) -> np.ndarray:
    """The source index of each of ``size`` output positions starting ``before`` positions before
    index 0 of an axis of length ``n``: -1 (fill) outside for ``constant``, clamped for ``edge``,
    mirrored without repeating the edge (period ``2(n-1)``) for ``reflect``."""
    i = np.arange(-before, size - before, dtype=np.int64)
    if mode == "edge":
        return np.clip(i, 0, n - 1)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(i)
        period = 2 * (n - 1)
        j = np.mod(i, period)
        return np.where(j >= n, period - j, j)
    return np.where((i >= 0) & (i < n), i, -1)


def pad_fill(op_name: str, fill: Sequence[float], image: np.ndarray | Meta) -> np.ndarray:
    """The per-channel fill converted to the image's dtype: integers round half to even and
    saturate to the dtype's range (as OpenCV's ``saturate_cast``); floats are cast."""
    c = image.shape[-1]
    if len(fill) not in (1, c):
        raise InputError(
            f"{op_name}: parameter 'fill' has {len(fill)} values but the image has {c} channels; "
            f"expected 1 value or {c} (one per channel)"
        )
    values = np.broadcast_to(np.asarray(fill, np.float64), (c,))
    if image.dtype.kind == "u":
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(image.dtype)
    return values.astype(image.dtype)


@dataclass(frozen=True)
class Padding:
    """``N`` (every side), ``[vertical, horizontal]`` or ``[top, bottom, left, right]`` of
    non-negative integers; normalised to ``(top, bottom, left, right)``."""

    def check(self, value: Any) -> tuple[int, int, int, int]:
        if _is_int(value) and value >= 0:
            return (int(value),) * 4
        listed = isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 4)
        if listed and all(_is_int(v) and v >= 0 for v in value):
            v = [int(x) for x in value]
            return (v[0], v[0], v[1], v[1]) if len(v) == 2 else (v[0], v[1], v[2], v[3])
        raise ValueError(f"expected {self.describe()}, got {value!r}")

    def describe(self) -> str:
        return "a non-negative integer, [vertical, horizontal] or [top, bottom, left, right] of non-negative integers"

    def json_schema(self) -> dict[str, Any]:
        item = {"type": "integer", "minimum": 0}
        two = {"type": "array", "items": item, "minItems": 2, "maxItems": 2}
        four = {"type": "array", "items": item, "minItems": 4, "maxItems": 4}
        return {"oneOf": [item, two, four]}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _pad_reference(image: np.ndarray, *, padding: tuple[int, int, int, int], padding_mode: str, fill: tuple[float, ...]) -> np.ndarray:
    top, bottom, left, right = padding
    h, w, c = image.shape
    if padding_mode == "constant":
        out = np.empty((h + top + bottom, w + left + right, c), image.dtype)
        out[...] = pad_fill("image.pad", fill, image)
        out[top : top + h, left : left + w] = image
        return out
    return np.pad(image, ((top, bottom), (left, right), (0, 0)), mode=cast(Any, padding_mode))


def _pad_infer(image: np.ndarray, *, padding: tuple[int, int, int, int], padding_mode: str, fill: tuple[float, ...]) -> list[tuple[tuple[int, ...], np.dtype]]:
    top, bottom, left, right = padding
    h, w, c = image.shape
    if padding_mode == "constant":
        pad_fill("image.pad", fill, image)  # the channel check, before any kernel runs
    return [((h + top + bottom, w + left + right, c), image.dtype)]


def _pad_check(params: dict[str, Any]) -> None:
    if params["padding_mode"] != "constant" and params["fill"] != (0.0,):
        raise ValueError(f"parameter 'fill' only applies to padding_mode 'constant', got padding_mode {params['padding_mode']!r}")


def _pad_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    mode = str(rng.choice(["constant", "edge", "reflect"]))
    form = int(rng.integers(0, 3))
    # wider than the image sometimes, so reflect repeats its period
    hi = 2 * max(image.shape[0], image.shape[1]) + 2
    padding: Any = int(rng.integers(0, hi)) if form == 0 else [int(v) for v in rng.integers(0, hi, size=2 if form == 1 else 4)]
    params: dict[str, Any] = {"padding": padding, "padding_mode": mode}
    if mode == "constant":
        n = 1 if rng.random() < 0.5 else image.shape[2]
        params["fill"] = [float(v) for v in rng.uniform(-10, 70000, size=n)]
    return params


pad = Op(
    "image.pad",
    doc="""Pad an image with a border.

``padding``: ``N`` pads every side by ``N``; ``[vertical, horizontal]`` pads top and bottom by
``vertical`` and left and right by ``horizontal``; ``[top, bottom, left, right]`` sets each side
(NumPy's axis order and ``cv2.copyMakeBorder``'s argument order, not torchvision's
left-top-right-bottom). The output is ``(H + top + bottom) × (W + left + right) × C``.

``padding_mode`` (named as torchvision's; ``mode`` is taken by the op call's train/serve):
- ``constant``: the border is ``fill``: one number, or one per channel. For integer images the
  fill rounds half to even and saturates to the dtype's range (OpenCV's ``saturate_cast``).
- ``edge``: repeats the edge pixel (``np.pad`` ``"edge"``, ``cv2.BORDER_REPLICATE``).
- ``reflect``: mirrors without repeating the edge pixel (``np.pad`` ``"reflect"``,
  ``cv2.BORDER_REFLECT_101``: ``dcb|abcd|cba``). A border wider than the image keeps mirroring
  with period ``2(n-1)`` along an axis of length ``n`` (as both NumPy and OpenCV do); an axis of
  length 1 repeats its one pixel.
``fill`` only applies to ``constant`` (a ParamError otherwise). Matches ``np.pad`` and
``cv2.copyMakeBorder`` exactly.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None, shape="H2 W2 C")],
    params=[
        Param("padding", Padding(), doc="N, [vertical, horizontal] or [top, bottom, left, right] pixels"),
        Param("padding_mode", Choice(("constant", "edge", "reflect")), "constant", "how the border is filled"),
        Param("fill", Floats(), (0.0,), "the border value for padding_mode 'constant': one number or one per channel"),
    ],
    reference=_pad_reference,
    infer=_pad_infer,
    check=_pad_check,
    example_params=_pad_examples,
)


@pad.kernel("cpu")
def _pad_cpu(image: np.ndarray, *, out: np.ndarray, padding: tuple[int, int, int, int], padding_mode: str, fill: tuple[float, ...]) -> None:
    top, _, left, _ = padding
    h, w, c = image.shape
    ys = source_index(h, top, out.shape[0], padding_mode)
    xs = source_index(w, left, out.shape[1], padding_mode)
    values = pad_fill("image.pad", fill, image) if padding_mode == "constant" else np.zeros(c, image.dtype)
    gather(image, out, ys, xs, values)
