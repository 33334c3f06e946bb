"""``image.resize``: nearest, bilinear, bicubic and area resampling to an exact or aspect-kept size."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._op import Op
from .._params import Bool, Choice, Int, Optional, Param, Size
from ._common import image_spec, jit, random_image
from ._resample import (
    FRAC,
    MID,
    Taps,
    horizontal_first,
    lane_weights,
    nearest_index,
    resample_window,
    taps,
)

__all__ = ["output_size", "resize", "resize_reference"]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")


def output_size(h: int, w: int, size: int | tuple[int, int], fit: str, max_size: int | None = None) -> tuple[int, int]:
    """The output ``(height, width)``, as torchvision v2 ``Resize`` computes it.

    ``exact``: ``size`` (an int is a square). ``shorter``: the shorter side becomes ``size`` and
    the longer one ``int(size * long / short)`` (truncated), then if that exceeds ``max_size`` the
    longer side becomes ``max_size`` and the shorter ``int(max_size * short / long)``.
    ``longer``: the longer side becomes ``size``, the shorter ``int(size * short / long)``
    (torchvision's ``size=None, max_size=size``). A side never drops below 1.
    """
    if fit == "exact":
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    assert isinstance(size, int)
    short, long = (w, h) if w <= h else (h, w)
    if fit == "shorter":
        new_short, new_long = size, int(size * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    else:
        new_short, new_long = int(size * short / long), size
    new_short = max(new_short, 1)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _axis_int(x: np.ndarray, t: Taps, axis: int) -> np.ndarray:
    shape = [1, 1, 1]
    shape[axis] = -1
    acc = np.zeros(1, np.int64)
    for k in range(t.width):
        acc = acc + t.wq[:, k].astype(np.int64).reshape(shape) * np.take(x, t.first + k, axis=axis)
    return acc


def _axis_float(x: np.ndarray, t: Taps, axis: int) -> np.ndarray:
    shape = [1, 1, 1]
    shape[axis] = -1
    acc = np.zeros(1, np.float64)
    for k in range(t.width):
        acc = acc + t.weights[:, k].reshape(shape) * np.take(x, t.first + k, axis=axis)
    return acc


def resize_reference(image: np.ndarray, oh: int, ow: int, interpolation: str, antialias: bool) -> np.ndarray:
    """The meaning of ``image.resize`` in NumPy (see the op's doc)."""
    h, w, _ = image.shape
    if (oh, ow) == (h, w):
        return image.copy()
    if interpolation == "nearest":
        return np.asarray(image[nearest_index(h, oh)][:, nearest_index(w, ow)])
    ty, tx = taps(h, oh, interpolation, antialias), taps(w, ow, interpolation, antialias)
    if image.dtype == np.uint8:
        hfirst = horizontal_first(h, w, oh, ow, ty, tx)
        first, second = ((tx, 1), (ty, 0)) if hfirst else ((ty, 0), (tx, 1))
        mid = _axis_int(image.astype(np.int64), *first)
        mid = np.clip((mid + (1 << (FRAC - MID - 1))) >> (FRAC - MID), 0, 255 << MID)
        out = _axis_int(mid, *second)
        return np.asarray(np.clip((out + (1 << (FRAC + MID - 1))) >> (FRAC + MID), 0, 255).astype(np.uint8))
    out = _axis_float(_axis_float(image.astype(np.float64), ty, 0), tx, 1)
    if image.dtype.kind == "u":
        return np.asarray(np.clip(np.rint(out), 0, np.iinfo(image.dtype).max).astype(image.dtype))
    return out.astype(image.dtype)


def _resize_ref(image: np.ndarray, *, size: Any, fit: str, max_size: int | None, interpolation: str, antialias: bool) -> np.ndarray:
    oh, ow = output_size(image.shape[0], image.shape[1], size, fit, max_size)
    return resize_reference(image, oh, ow, interpolation, antialias)


def _resize_infer(image: np.ndarray, *, size: Any, fit: str, max_size: int | None, **_: Any) -> list[tuple[tuple[int, ...], np.dtype]]:
    oh, ow = output_size(image.shape[0], image.shape[1], size, fit, max_size)
    return [((oh, ow, image.shape[2]), image.dtype)]


def _resize_check(p: dict[str, Any]) -> None:
    if p["fit"] != "exact" and not isinstance(p["size"], int):
        raise ValueError(f"parameter 'size' must be one integer with fit={p['fit']!r}, got {list(p['size'])}")
    if p["max_size"] is not None:
        if p["fit"] != "shorter":
            raise ValueError(f"parameter 'max_size' only applies with fit='shorter', got fit={p['fit']!r}")
        if p["max_size"] <= p["size"]:
            raise ValueError(f"parameter 'max_size' must be greater than 'size' ({p['size']}), got {p['max_size']}")


def _resize_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    fit = str(rng.choice(["exact", "shorter", "longer"]))
    size: Any = int(rng.integers(1, 50))
    if fit == "exact" and rng.random() < 0.7:
        size = [int(rng.integers(1, 50)), int(rng.integers(1, 50))]
    out = {"size": size, "fit": fit, "interpolation": str(rng.choice(INTERPOLATIONS)), "antialias": bool(rng.random() < 0.6)}
    if fit == "shorter" and rng.random() < 0.3:
        out["max_size"] = size + int(rng.integers(1, 20))
    return out


resize = Op(
    "image.resize",
    doc="""Resample an image to a new size; the output keeps the input's dtype.

Size: ``fit="exact"`` (default) gives ``size`` = ``[height, width]`` (an int: a square);
``"shorter"`` makes the shorter side ``size`` and keeps the aspect ratio, ``"longer"`` the longer
side. The other side is computed exactly as torchvision v2 ``Resize`` does (truncated:
1080×1920 → 256 gives 256×455); ``max_size`` caps the longer side with ``"shorter"`` as
torchvision's; ``"longer"`` is torchvision's ``Resize(None, max_size=size)``. A side never drops
below 1. An unchanged size returns a copy.

Filters (pixel centres at ``i + 0.5``; output ``i`` looks at source ``(i + 0.5) * in / out``):

* ``nearest``: the source pixel containing that point: torchvision ``NEAREST_EXACT`` exactly
  (computed as torch does, in float32), and OpenCV ``INTER_NEAREST_EXACT`` except where the
  point falls exactly on a pixel border (OpenCV's fixed point can take the left pixel). Any dtype.
* ``bilinear``: with ``antialias`` (default) torchvision ``Resize(antialias=True)`` (= PIL): a
  triangle stretched by the scale when shrinking, identical to no antialias when enlarging.
  Without antialias: 2-tap interpolation with clamped edges, OpenCV ``INTER_LINEAR``.
* ``bicubic``: with ``antialias`` torchvision's antialiased bicubic (PIL's: a = -0.5, weights
  renormalised at the edges, enlarging included); without, torchvision's bicubic (a = -0.75,
  edge pixels repeated).
* ``area``: each output pixel is the average of the source area it covers, weighted by exact
  overlap: OpenCV ``INTER_AREA`` when both sides shrink; when both grow the same rule, which is
  OpenCV's ``INTER_AREA`` enlargement (a blend only across source pixel borders; OpenCV's float
  test can miss a border an output pixel starts exactly on). Where one side shrinks and the other
  grows OpenCV approximates; this stays exact.

``antialias`` does not apply to nearest and area.

uint8 images use exact fixed-point arithmetic: 14-bit weights summing to exactly 2**14 (flat
areas stay flat), two separable passes, the intermediate kept with 7 fraction bits and clamped
to [0, 255], the result rounded half up and saturated. The horizontal pass goes first for bicubic
(as torchvision's uint8 path, whose clamped intermediate this reproduces), otherwise whichever
order costs less for the sizes. Results are within 1 of OpenCV (``INTER_LINEAR``,
``INTER_AREA``) and of torchvision's uint8 resize, and the CPU kernel equals the reference bit
for bit. uint16 and float32 images are resampled in float32 (the reference in float64): uint16
results are rounded half to even (as torchvision) and saturated to [0, 65535] (torchvision's
bicubic wraps around instead, so it differs where bicubic overshoots); float32 results are not
clamped (bicubic can overshoot). Non-finite float values are not supported.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None, shape="H2 W2 C")],
    params=[
        Param("size", Size(pair=False), doc="[height, width], or one int: a square, or the shorter/longer side"),
        Param("fit", Choice(("exact", "shorter", "longer")), "exact", "what size means"),
        Param("max_size", Optional(Int(min=1)), None, "with fit='shorter': the most the longer side may be"),
        Param("interpolation", Choice(INTERPOLATIONS), "bilinear", "the resampling filter"),
        Param("antialias", Bool(), True, "bilinear/bicubic: widen the filter when shrinking (torchvision)"),
    ],
    reference=_resize_ref,
    infer=_resize_infer,
    check=_resize_check,
    # float32 sums round in another order than the float64 reference: error grows with the range
    tolerance={"uint8": 0, "uint16": 1, "float32": (1e-5, 2e-6)},
    example_params=_resize_examples,
    example_inputs=lambda rng, dtype: (random_image(rng, dtype),),
)


@jit
def _nearest_kernel(src: np.ndarray, dst: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> None:
    oh, ow, c = dst.shape
    for y in range(oh):
        row = src[ys[y]]
        out = dst[y]
        for x in range(ow):
            px = row[xs[x]]
            for k in range(c):
                out[x, k] = px[k]


@resize.kernel("cpu")
def _resize_cpu(image: np.ndarray, *, out: np.ndarray, interpolation: str, antialias: bool, **_: Any) -> None:
    resize_into(np.ascontiguousarray(image), out, interpolation, antialias)


def resize_into(src: np.ndarray, out: np.ndarray, interpolation: str, antialias: bool) -> None:
    """Resize C-contiguous ``src`` into ``out`` (its size decides the scale) with the CPU kernels."""
    h, w, c = src.shape
    oh, ow = out.shape[:2]
    if (oh, ow) == (h, w):
        out[...] = src
    elif interpolation == "nearest":
        # any dtype as bytes: one compiled kernel
        pix = src.view(np.uint8).reshape(h, w, c * src.itemsize)
        _nearest_kernel(pix, out.view(np.uint8).reshape(oh, ow, -1), nearest_index(h, oh), nearest_index(w, ow))
    else:
        ty, tx = taps(h, oh, interpolation, antialias), taps(w, ow, interpolation, antialias)
        hfirst = horizontal_first(h, w, oh, ow, ty, tx)
        wl = lane_weights(w, ow, interpolation, antialias, c, src.dtype == np.uint8)
        resample_window(src, ty, tx, wl, 0, 0, hfirst, out)
