"""Letterbox: keep-aspect resize into a fixed size, then pad to it (the YOLO pre-processing)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._op import Op
from .._params import Bool, Choice, Floats, Param, Size
from .._spec import TensorSpec
from ._common import image_spec
from ._pad import pad, pad_fill
from ._resize import resize

__all__ = ["letterbox", "letterbox_geometry"]

_NAME = "image.letterbox"
ShapeDtypes = list[tuple[tuple[int, ...], np.dtype]]


def letterbox_geometry(height: int, width: int, size: tuple[int, int], scaleup: bool) -> tuple[int, int, int, int]:
    """``(new_height, new_width, top, left)``: the resized image's size and where it sits.

    ``r = min(H_out / H, W_out / W)`` (at most 1 unless ``scaleup``); each side is
    ``round(side * r)`` (Python's round), kept in ``[1, target]``; the image is centred with the
    odd leftover pixel at the bottom / right (``top = (H_out - new_height) // 2``).
    """
    th, tw = size
    r = min(th / height, tw / width)
    if not scaleup:
        r = min(r, 1.0)
    nh = min(max(int(round(height * r)), 1), th)
    nw = min(max(int(round(width * r)), 1), tw)
    return nh, nw, (th - nh) // 2, (tw - nw) // 2


def _padding(size: tuple[int, int], nh: int, nw: int, top: int, left: int) -> tuple[int, int, int, int]:
    return (top, size[0] - nh - top, left, size[1] - nw - left)


def _mapping(height: int, width: int, nh: int, nw: int, top: int, left: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([nw / width, nh / height], np.float32), np.array([left, top], np.float32)


def _reference(image: np.ndarray, *, size: tuple[int, int], fill: tuple[float, ...], interpolation: str, antialias: bool, scaleup: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    nh, nw, top, left = letterbox_geometry(h, w, size, scaleup)
    pad_fill(_NAME, fill, image)  # the fill's channel check, with this op's name
    resized = image
    if (nh, nw) != (h, w):
        resized = resize.reference(image, size=(nh, nw), fit="exact", max_size=None, interpolation=interpolation, antialias=antialias)
    boxed = pad.reference(resized, padding=_padding(size, nh, nw, top, left), padding_mode="constant", fill=fill)
    return (boxed, *_mapping(h, w, nh, nw, top, left))


def _infer(image: np.ndarray, *, size: tuple[int, int], fill: tuple[float, ...], **_: Any) -> ShapeDtypes:
    pad_fill(_NAME, fill, image)
    f32 = np.dtype(np.float32)
    return [((size[0], size[1], image.shape[2]), image.dtype), ((2,), f32), ((2,), f32)]


def _examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    n = 1 if rng.random() < 0.6 else image.shape[2]
    return {
        "size": [int(v) for v in rng.integers(1, 48, size=2)] if rng.random() < 0.7 else int(rng.integers(1, 48)),
        "fill": [float(v) for v in rng.uniform(0, 300, size=n)],
        "interpolation": str(rng.choice(["nearest", "bilinear", "bicubic", "area"])),
        "antialias": bool(rng.random() < 0.5),
        "scaleup": bool(rng.random() < 0.7),
    }


letterbox = Op(
    _NAME,
    doc="""Resize keeping the aspect ratio so the image fits in ``size``, then pad it to exactly ``size``.

The YOLO letterbox (YOLOv5's ``letterbox(auto=False)``): ``r = min(H_out / H, W_out / W)``,
capped at 1 when ``scaleup`` is false (never enlarge); the image is resized with ``image.resize``
(``fit="exact"``, ``interpolation``, ``antialias``) to ``round(H * r) × round(W * r)`` (Python's
round; each side kept in ``[1, target]``; not resampled at all when that is its own size), and
placed centred on a ``size`` canvas of ``fill`` (one value or one per channel, in the image's
units; integers round half to even and saturate, as ``image.pad``). When the leftover is odd the
extra pixel goes to the bottom / right: ``top = (H_out - new_H) // 2``,
``left = (W_out - new_W) // 2``.

Outputs ``image`` (``size`` × C, the input's dtype), ``scale`` = ``[new_W / W, new_H / H]`` (the
actual per-axis ratio after rounding, float32) and ``offset`` = ``[left, top]`` (float32), so a
point of the input maps as ``x' = x * scale[0] + offset[0]``, ``y' = y * scale[1] + offset[1]``
(pixel-edge coordinates: the input's corner (W, H) lands at the content's far corner), and boxes
map back with ``x = (x' - offset[0]) / scale[0]``. With ``antialias=False`` and bilinear it matches
``cv2.resize(INTER_LINEAR)`` + ``cv2.copyMakeBorder(BORDER_CONSTANT)`` within 1 LSB.""",
    inputs=[image_spec()],
    outputs=[
        image_spec(dtypes=None, shape="height width C"),
        TensorSpec("scale", (np.float32,), "2", "[scale_x, scale_y]: resized size / input size"),
        TensorSpec("offset", (np.float32,), "2", "[pad_left, pad_top] in output pixels"),
    ],
    params=[
        Param("size", Size(), doc="N or [height, width] of the output"),
        Param("fill", Floats(), (114.0,), "the border value: one number or one per channel (114: YOLO's gray)"),
        Param("interpolation", Choice(("nearest", "bilinear", "bicubic", "area")), "bilinear", "as image.resize"),
        Param("antialias", Bool(), True, "as image.resize"),
        Param("scaleup", Bool(), True, "false: only ever shrink (YOLOv5's scaleup=False)"),
    ],
    reference=_reference,
    infer=_infer,
    tolerance=resize.tolerance,
    example_params=_examples,
)


@letterbox.kernel("cpu")
def _letterbox_cpu(image: np.ndarray, *, out: tuple[np.ndarray, np.ndarray, np.ndarray], size: tuple[int, int], fill: tuple[float, ...], interpolation: str, antialias: bool, scaleup: bool) -> None:
    boxed, scale, offset = out
    h, w, c = image.shape
    nh, nw, top, left = letterbox_geometry(h, w, size, scaleup)
    resized = image
    if (nh, nw) != (h, w):
        resized = np.empty((nh, nw, c), image.dtype)
        resize.kernel_for("cpu").fn(  # type: ignore[union-attr]
            image, out=resized, size=(nh, nw), fit="exact", max_size=None, interpolation=interpolation, antialias=antialias
        )
    pad.kernel_for("cpu").fn(resized, out=boxed, padding=_padding(size, nh, nw, top, left), padding_mode="constant", fill=fill)  # type: ignore[union-attr]
    scale[...], offset[...] = _mapping(h, w, nh, nw, top, left)
