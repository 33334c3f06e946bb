"""Box geometry: format conversion, normalized ↔ pixels, clipping, and the letterbox mapping."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Choice, Param
from .._spec import TensorSpec
from ..image._common import jit
from ._common import (
    FORMATS,
    ShapeDtypes,
    boxes_spec,
    check_finite_positive,
    image_size_of,
    random_boxes,
    random_size,
    size_spec,
)

__all__ = ["clip_boxes", "convert_boxes", "letterbox_boxes", "normalized_to_pixels", "pixels_to_normalized", "unletterbox_boxes"]


def _same_shape(boxes: np.ndarray, *_: Any, **__: Any) -> ShapeDtypes:
    return [(boxes.shape, boxes.dtype)]


def _n(rng: np.random.Generator) -> int:
    return int(rng.choice([1, 2, 3, 17, 64])) if rng.random() < 0.5 else int(rng.integers(1, 300))


# -- format conversion ---------------------------------------------------------------------------


def _to_xyxy(b: np.ndarray, fmt: str) -> tuple[np.ndarray, ...]:
    a0, a1, a2, a3 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    half = b.dtype.type(0.5)
    if fmt == "xyxy":
        return a0, a1, a2, a3
    if fmt == "xywh":
        return a0, a1, a0 + a2, a1 + a3
    return a0 - half * a2, a1 - half * a3, a0 + half * a2, a1 + half * a3


def _convert_reference(boxes: np.ndarray, *, in_fmt: str, out_fmt: str) -> np.ndarray:
    if in_fmt == out_fmt:
        return boxes.copy()
    x1, y1, x2, y2 = _to_xyxy(boxes, in_fmt)
    two = boxes.dtype.type(2)
    if out_fmt == "xyxy":
        cols = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        cols = (x1, y1, x2 - x1, y2 - y1)
    else:
        cols = ((x1 + x2) / two, (y1 + y2) / two, x2 - x1, y2 - y1)
    return np.stack(cols, 1).astype(boxes.dtype, copy=False)


@jit
def _convert_loop(b: np.ndarray, out: np.ndarray, fin: int, fout: int, half: Any, two: Any) -> None:
    for i in range(b.shape[0]):
        a0, a1, a2, a3 = b[i, 0], b[i, 1], b[i, 2], b[i, 3]
        if fin == fout:
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = a0, a1, a2, a3
            continue
        if fin == 0:
            x1, y1, x2, y2 = a0, a1, a2, a3
        elif fin == 1:
            x1, y1, x2, y2 = a0, a1, a0 + a2, a1 + a3
        else:
            x1, y1, x2, y2 = a0 - half * a2, a1 - half * a3, a0 + half * a2, a1 + half * a3
        if fout == 0:
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = x1, y1, x2, y2
        elif fout == 1:
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = x1, y1, x2 - x1, y2 - y1
        else:
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = (x1 + x2) / two, (y1 + y2) / two, x2 - x1, y2 - y1


def _convert_examples(rng: np.random.Generator, boxes: np.ndarray) -> dict[str, Any]:
    return {"in_fmt": str(rng.choice(FORMATS)), "out_fmt": str(rng.choice(FORMATS))}


def _boxes_example(rng: np.random.Generator, dtype: np.dtype) -> tuple[Any, ...]:
    return (random_boxes(rng, _n(rng), dtype, fmt=str(rng.choice(FORMATS))),)


convert_boxes = Op(
    "detect.convert_boxes",
    doc="""Convert boxes between ``xyxy`` (corners), ``xywh`` (top-left corner and size) and ``cxcywh``
(centre and size), exactly as ``torchvision.ops.box_convert``: bit for bit in the boxes' dtype.

Every conversion goes through corners, as torchvision's does (``xywh`` → ``cxcywh`` computes
``x2 = x + w`` first, then ``w' = x2 - x``); ``cxcywh`` → corners is ``cx ∓ 0.5 * w``, corners →
centre is ``(x1 + x2) / 2``. The same format in and out is a copy. Units are untouched (pixels or
normalized alike). Degenerate boxes (zero or negative sizes) convert by the same formulas; NaN and
inf propagate.""",
    inputs=[boxes_spec()],
    outputs=[boxes_spec(dtypes=None)],
    params=[
        Param("in_fmt", Choice(FORMATS), doc="the format of the input boxes"),
        Param("out_fmt", Choice(FORMATS), doc="the format to convert to"),
    ],
    reference=_convert_reference,
    infer=_same_shape,
    example_params=_convert_examples,
    example_inputs=_boxes_example,
)


@convert_boxes.kernel("cpu")
def _convert_cpu(boxes: np.ndarray, *, out: np.ndarray, in_fmt: str, out_fmt: str) -> None:
    t = boxes.dtype.type
    _convert_loop(boxes, out, FORMATS.index(in_fmt), FORMATS.index(out_fmt), t(0.5), t(2))


# -- per-axis scaling and offsets: normalized ↔ pixels, letterbox ↔ original -------------------


@jit
def _affine_loop(b: np.ndarray, out: np.ndarray, mul: np.ndarray, add: np.ndarray, divide: bool) -> None:
    """``out = b * mul + add`` per column (``(b - add) / mul`` with ``divide``), in b's dtype."""
    for i in range(b.shape[0]):
        for k in range(4):
            if divide:
                out[i, k] = (b[i, k] - add[k]) / mul[k]
            else:
                out[i, k] = b[i, k] * mul[k] + add[k]


def _cols(dtype: np.dtype, x: float, y: float) -> np.ndarray:
    return np.array([x, y, x, y], dtype)


def _size_examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[Any, ...]:
    return (random_boxes(rng, _n(rng), dtype, extent=1.0 if rng.random() < 0.5 else 640.0), random_size(rng))


def _to_pixels_reference(boxes: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    h, w = image_size_of("detect.normalized_to_pixels", image_size)
    return boxes * _cols(boxes.dtype, w, h)


def _to_normalized_reference(boxes: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    h, w = image_size_of("detect.pixels_to_normalized", image_size)
    return boxes / _cols(boxes.dtype, w, h)


_SCALE_NOTE = """The image size is cast to the boxes' dtype first; the format (``xyxy``, ``xywh``, ``cxcywh``)
does not matter, since every coordinate of each scales with its axis. ``image_size`` must be
finite and positive (else an ``InputError``); NaN and inf coordinates propagate."""

normalized_to_pixels = Op(
    "detect.normalized_to_pixels",
    doc="Scale boxes from normalized units (0..1 of the image) to pixels: x coordinates (columns 0 "
    "and 2) times the image width, y coordinates (columns 1 and 3) times its height.\n\n" + _SCALE_NOTE,
    inputs=[boxes_spec(), size_spec()],
    outputs=[boxes_spec(dtypes=None)],
    reference=_to_pixels_reference,
    infer=_same_shape,
    example_inputs=_size_examples,
)

pixels_to_normalized = Op(
    "detect.pixels_to_normalized",
    doc="Scale boxes from pixels to normalized units: x coordinates (columns 0 and 2) divided by the "
    "image width, y coordinates (columns 1 and 3) by its height (a division, not a multiplication "
    "by the reciprocal).\n\n" + _SCALE_NOTE,
    inputs=[boxes_spec(), size_spec()],
    outputs=[boxes_spec(dtypes=None)],
    reference=_to_normalized_reference,
    infer=_same_shape,
    example_inputs=_size_examples,
)


@normalized_to_pixels.kernel("cpu")
def _to_pixels_cpu(boxes: np.ndarray, image_size: np.ndarray, *, out: np.ndarray) -> None:
    h, w = image_size_of("detect.normalized_to_pixels", image_size)
    _affine_loop(boxes, out, _cols(boxes.dtype, w, h), _cols(boxes.dtype, 0, 0), False)


@pixels_to_normalized.kernel("cpu")
def _to_normalized_cpu(boxes: np.ndarray, image_size: np.ndarray, *, out: np.ndarray) -> None:
    h, w = image_size_of("detect.pixels_to_normalized", image_size)
    _affine_loop(boxes, out, _cols(boxes.dtype, w, h), _cols(boxes.dtype, 0, 0), True)


def _letterbox_geometry(op_name: str, boxes: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    check_finite_positive(op_name, "scale [scale_x, scale_y]", scale)
    if not np.isfinite(np.asarray(offset, np.float64)).all():
        raise InputError(f"{op_name}: offset [pad_left, pad_top] must be finite, got {np.asarray(offset).tolist()}")
    return _cols(boxes.dtype, float(scale[0]), float(scale[1])), _cols(boxes.dtype, float(offset[0]), float(offset[1]))


def _letterbox_reference(boxes: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    mul, add = _letterbox_geometry("detect.letterbox_boxes", boxes, scale, offset)
    return boxes * mul + add


def _unletterbox_reference(boxes: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    mul, add = _letterbox_geometry("detect.unletterbox_boxes", boxes, scale, offset)
    return (boxes - add) / mul


def _letterbox_examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[Any, ...]:
    sdt = np.float32 if rng.random() < 0.7 else np.float64
    scale = rng.uniform(0.05, 3, 2).astype(sdt)
    offset = (rng.integers(0, 300, 2) * (rng.random(2) < 0.7)).astype(sdt)
    return random_boxes(rng, _n(rng), dtype), scale, offset


_SCALE_SPEC = TensorSpec("scale", (np.float32, np.float64), "2", "[scale_x, scale_y], as image.letterbox outputs it")
_OFFSET_SPEC = TensorSpec("offset", (np.float32, np.float64), "2", "[pad_left, pad_top], as image.letterbox outputs it")
_LETTERBOX_NOTE = """``scale`` and ``offset`` are ``image.letterbox``'s outputs (``x' = x * scale_x + offset_x``,
``y' = y * scale_y + offset_y``); they are cast to the boxes' dtype first. Boxes are ``xyxy`` (convert
other formats first). ``scale`` must be finite and positive and ``offset`` finite (else an
``InputError``); NaN and inf coordinates propagate. Nothing is clipped: see ``detect.clip_boxes``."""

letterbox_boxes = Op(
    "detect.letterbox_boxes",
    doc="Map ``xyxy`` boxes of the original image into the letterboxed image (training targets): "
    "``x' = x * scale_x + offset_x``, ``y' = y * scale_y + offset_y``, in the boxes' dtype.\n\n" + _LETTERBOX_NOTE,
    inputs=[boxes_spec(doc="xyxy boxes in original image pixels"), _SCALE_SPEC, _OFFSET_SPEC],
    outputs=[boxes_spec(dtypes=None, doc="xyxy boxes in letterboxed image pixels")],
    reference=_letterbox_reference,
    infer=_same_shape,
    example_inputs=_letterbox_examples,
)

unletterbox_boxes = Op(
    "detect.unletterbox_boxes",
    doc="Map ``xyxy`` boxes of the letterboxed image (a detector's output) back to the original image: "
    "``x = (x' - offset_x) / scale_x``, ``y = (y' - offset_y) / scale_y``, in the boxes' dtype "
    "(the inverse of ``detect.letterbox_boxes`` up to rounding).\n\n" + _LETTERBOX_NOTE,
    inputs=[boxes_spec(doc="xyxy boxes in letterboxed image pixels"), _SCALE_SPEC, _OFFSET_SPEC],
    outputs=[boxes_spec(dtypes=None, doc="xyxy boxes in original image pixels")],
    reference=_unletterbox_reference,
    infer=_same_shape,
    example_inputs=_letterbox_examples,
)


@letterbox_boxes.kernel("cpu")
def _letterbox_cpu(boxes: np.ndarray, scale: np.ndarray, offset: np.ndarray, *, out: np.ndarray) -> None:
    mul, add = _letterbox_geometry("detect.letterbox_boxes", boxes, scale, offset)
    _affine_loop(boxes, out, mul, add, False)


@unletterbox_boxes.kernel("cpu")
def _unletterbox_cpu(boxes: np.ndarray, scale: np.ndarray, offset: np.ndarray, *, out: np.ndarray) -> None:
    mul, add = _letterbox_geometry("detect.unletterbox_boxes", boxes, scale, offset)
    _affine_loop(boxes, out, mul, add, True)


# -- clipping ------------------------------------------------------------------------------------


def _clip_reference(boxes: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    h, w = image_size_of("detect.clip_boxes", image_size)
    t = boxes.dtype.type
    return np.clip(boxes, t(0), _cols(boxes.dtype, w, h))


@jit
def _clip_loop(b: np.ndarray, out: np.ndarray, hi: np.ndarray) -> None:
    for i in range(b.shape[0]):
        for k in range(4):
            v = b[i, k]
            if v < 0:
                v = hi[k] - hi[k]  # +0 in the boxes' dtype
            elif v > hi[k]:
                v = hi[k]
            out[i, k] = v


clip_boxes = Op(
    "detect.clip_boxes",
    doc="""Clip ``xyxy`` boxes to the image: x coordinates into ``[0, width]``, y coordinates into
``[0, height]``, exactly as ``torchvision.ops.clip_boxes_to_image`` (the image size cast to the boxes'
dtype). A box wholly outside the image becomes a zero-area box on its border (NMS gives it IoU 0 with
every box); an inverted box (x2 < x1) stays inverted or becomes zero-width. NaN coordinates stay
NaN, ±inf clip to the border. ``image_size`` ([height, width]) must be finite and positive (else an
``InputError``); fractional sizes are allowed.""",
    inputs=[boxes_spec(doc="xyxy boxes in pixels"), size_spec()],
    outputs=[boxes_spec(dtypes=None)],
    reference=_clip_reference,
    infer=_same_shape,
    example_inputs=_size_examples,
)


@clip_boxes.kernel("cpu")
def _clip_cpu(boxes: np.ndarray, image_size: np.ndarray, *, out: np.ndarray) -> None:
    h, w = image_size_of("detect.clip_boxes", image_size)
    _clip_loop(boxes, out, _cols(boxes.dtype, w, h))
