"""Colour conversion: channel order, gray (ITU-R BT.601) and the YUV 4:2:0 frames video decoders emit."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Choice, Param
from ._common import image_spec, jit, random_image

__all__ = ["CONVERSIONS", "convert_color", "gray_reference"]

ShapeDtypes = list[tuple[tuple[int, ...], np.dtype]]

# channel selections: output channel k is input channel order[k]
_SELECT = {
    "rgb_to_bgr": (2, 1, 0),
    "bgr_to_rgb": (2, 1, 0),
    "gray_to_rgb": (0, 0, 0),
    "rgba_to_rgb": (0, 1, 2),
}
# gray: which input channel holds red, green and blue
_GRAY = {"rgb_to_gray": (0, 1, 2), "bgr_to_gray": (2, 1, 0)}
# YUV 4:2:0 → colour: (is NV12 (else I420), index of blue in the output)
_YUV = {
    "nv12_to_rgb": (True, 2),
    "nv12_to_bgr": (True, 0),
    "i420_to_rgb": (False, 2),
    "i420_to_bgr": (False, 0),
}
_IN_CHANNELS = {"rgb_to_bgr": 3, "bgr_to_rgb": 3, "gray_to_rgb": 1, "rgba_to_rgb": 4, "rgb_to_gray": 3, "bgr_to_gray": 3}
_IN_CHANNELS.update(dict.fromkeys(_YUV, 1))
#: every conversion, in the order the docs list them.
CONVERSIONS = (*_SELECT, *_GRAY, *_YUV)

# BT.601 luma weights (R, G, B) as OpenCV applies them: 15-bit fixed point for integers
# (9798 + 19235 + 3735 = 32768, so a gray pixel stays exactly itself), float32 for floats.
_GRAY_INT = (9798, 19235, 3735)
_GRAY_SHIFT = 15
_GRAY_FLOAT = (0.299, 0.587, 0.114)
# BT.601 limited range YUV → RGB, 20-bit fixed point, as OpenCV's cvtColor(COLOR_YUV2RGB_*)
_CY, _CVR, _CVG, _CUG, _CUB, _YUV_SHIFT = 1220542, 1673527, -852492, -409993, 2116026, 20

_NAME = "image.convert_color"


def _check(image: np.ndarray, conversion: str) -> None:
    h, w, c = image.shape
    need = _IN_CHANNELS[conversion]
    if c != need:
        raise InputError(
            f"{_NAME}: conversion {conversion!r} needs an image with {need} channel(s) (shape [H W {need}]), "
            f"got shape {list(image.shape)}"
        )
    if conversion not in _YUV:
        return
    if image.dtype != np.uint8:
        raise InputError(f"{_NAME}: conversion {conversion!r} takes uint8 YUV data, got dtype {image.dtype}")
    if h % 3 or w % 2:
        raise InputError(
            f"{_NAME}: conversion {conversion!r} needs a YUV 4:2:0 frame of shape [H*3/2 W 1] with an even image "
            f"height H and width W (the input height a multiple of 3), got shape {list(image.shape)} "
            f"(image height {h * 2 / 3:g}, width {w})"
        )


def _infer(image: np.ndarray, *, conversion: str) -> ShapeDtypes:
    _check(image, conversion)
    h, w, _ = image.shape
    if conversion in _YUV:
        return [((h * 2 // 3, w, 3), image.dtype)]
    return [((h, w, 1 if conversion in _GRAY else 3), image.dtype)]


def gray_reference(image: np.ndarray, order: tuple[int, int, int] = (0, 1, 2)) -> np.ndarray:
    """BT.601 gray of an image whose red, green and blue are channels ``order``; shape H W 1."""
    if image.dtype.kind == "f":
        # float32, summed in channel (memory) order as OpenCV does
        w = np.zeros(3, np.float32)
        w[list(order)] = _GRAY_FLOAT
        acc = image[..., 0] * w[0] + image[..., 1] * w[1] + image[..., 2] * w[2]
        return acc.astype(image.dtype)[..., None]
    r, g, b = (image[..., i].astype(np.int64) for i in order)
    wr, wg, wb = _GRAY_INT
    acc = (r * wr + g * wg + b * wb + (1 << (_GRAY_SHIFT - 1))) >> _GRAY_SHIFT
    return acc.astype(image.dtype)[..., None]


def _yuv_reference(image: np.ndarray, nv12: bool, bidx: int) -> np.ndarray:
    ih, w = image.shape[0] * 2 // 3, image.shape[1]
    flat = image.reshape(-1)
    y = flat[: ih * w].reshape(ih, w).astype(np.int64)
    if nv12:
        uv = flat[ih * w :].reshape(ih // 2, w // 2, 2)
        u, v = uv[..., 0], uv[..., 1]
    else:
        q = ih * w // 4
        u = flat[ih * w : ih * w + q].reshape(ih // 2, w // 2)
        v = flat[ih * w + q :].reshape(ih // 2, w // 2)
    # each chroma sample covers a 2×2 block of luma (nearest neighbour, as OpenCV)
    u = np.repeat(np.repeat(u.astype(np.int64) - 128, 2, 0), 2, 1)
    v = np.repeat(np.repeat(v.astype(np.int64) - 128, 2, 0), 2, 1)
    yy = np.maximum(y - 16, 0) * _CY + (1 << (_YUV_SHIFT - 1))
    r = (yy + _CVR * v) >> _YUV_SHIFT
    g = (yy + _CVG * v + _CUG * u) >> _YUV_SHIFT
    b = (yy + _CUB * u) >> _YUV_SHIFT
    rgb = np.stack([b, g, r] if bidx == 0 else [r, g, b], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _reference(image: np.ndarray, *, conversion: str) -> np.ndarray:
    _check(image, conversion)
    if conversion in _SELECT:
        return image[..., list(_SELECT[conversion])].copy()
    if conversion in _GRAY:
        return gray_reference(image, _GRAY[conversion])
    return _yuv_reference(image, *_YUV[conversion])


def _example_inputs(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    if np.dtype(dtype) == np.uint8 and rng.random() < 0.35:
        # a YUV 4:2:0 frame: image height and width even, 2×2 the smallest
        h, w = 2 * int(rng.integers(1, 20)), 2 * int(rng.integers(1, 25))
        return (rng.integers(0, 256, (h * 3 // 2, w, 1), dtype=np.uint8),)
    return (random_image(rng, dtype, channels=(1, 3, 3, 4)),)


def _example_params(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    # the conversion follows from the drawn input: its channels, and whether it can be a YUV frame
    h, w, c = image.shape
    if c == 1:
        yuv_ok = image.dtype == np.uint8 and h % 3 == 0 and w % 2 == 0
        pick = list(_YUV) if yuv_ok and rng.random() < 0.85 else ["gray_to_rgb"]
    else:
        pick = [k for k, n in _IN_CHANNELS.items() if n == c]
    return {"conversion": str(rng.choice(pick))}


convert_color = Op(
    _NAME,
    doc="""Convert an image between colour layouts; ``conversion`` names the input and output layouts.

* ``rgb_to_bgr`` / ``bgr_to_rgb``: reverse the three channels (exact).
* ``gray_to_rgb``: replicate the one channel three times (exact); ``rgba_to_rgb`` drops the alpha
  channel (the 4th) without compositing, and also serves for BGRA → BGR.
* ``rgb_to_gray`` / ``bgr_to_gray``: ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B, output
  ``H W 1``. uint8/uint16: 15-bit fixed point ``(9798 R + 19235 G + 3735 B + 16384) >> 15``, i.e.
  rounded half up; bit-exact with ``cv2.cvtColor(COLOR_RGB2GRAY)`` (checked on OpenCV 4.10 and 5.0).
  The weights sum to 1, so a gray pixel (R = G = B) keeps its value. float32: computed in float32 as
  ``c0*w0 + c1*w1 + c2*w2`` in channel order, matching OpenCV within 1e-5 on [0, 1] data.
* ``nv12_to_rgb`` / ``nv12_to_bgr`` / ``i420_to_rgb`` / ``i420_to_bgr``: YUV 4:2:0 frames as video
  decoders emit them, in OpenCV's layout: a uint8 ``[H*3/2, W, 1]`` array holding the ``H × W`` luma
  plane followed by the chroma (NV12: one plane of interleaved U, V pairs; I420: the U plane then the
  V plane, each ``H/2 × W/2``). H and W must be even. Output ``[H, W, 3]``. ITU-R BT.601 limited range
  (Y in [16, 235], U/V centred on 128), each chroma sample covering a 2×2 luma block, 20-bit fixed
  point with rounding and saturation, bit-exact with ``cv2.cvtColor(COLOR_YUV2RGB_NV12 / _I420)``
  (OpenCV 4.10 and 5.0).

dtypes: uint8, uint16 and float32 for channel and gray conversions; uint8 only for YUV. The output
has the input's dtype. A wrong channel count, a non-uint8 YUV frame or a frame whose sizes are odd
raises ``InputError``.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=None, shape="H2 W C2")],
    params=[Param("conversion", Choice(CONVERSIONS), doc="from which layout to which: " + ", ".join(CONVERSIONS))],
    reference=_reference,
    infer=_infer,
    example_inputs=_example_inputs,
    example_params=_example_params,
)


@jit
def _select_kernel(src: np.ndarray, dst: np.ndarray, order: np.ndarray) -> None:
    h, w, c = dst.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                dst[y, x, k] = src[y, x, order[k]]


@jit
def _gray_int_kernel(src: np.ndarray, dst: np.ndarray, wts: np.ndarray, shift: int) -> None:
    h, w = dst.shape[0], dst.shape[1]
    half = 1 << (shift - 1)
    for y in range(h):
        for x in range(w):
            acc = np.int64(src[y, x, 0]) * wts[0] + np.int64(src[y, x, 1]) * wts[1] + np.int64(src[y, x, 2]) * wts[2]
            dst[y, x, 0] = (acc + half) >> shift


@jit
def _gray_float_kernel(src: np.ndarray, dst: np.ndarray, wts: np.ndarray) -> None:
    h, w = dst.shape[0], dst.shape[1]
    for y in range(h):
        for x in range(w):
            dst[y, x, 0] = src[y, x, 0] * wts[0] + src[y, x, 1] * wts[1] + src[y, x, 2] * wts[2]


@jit
def _yuv420_kernel(flat: np.ndarray, dst: np.ndarray, nv12: bool, bidx: int) -> None:
    h, w = dst.shape[0], dst.shape[1]
    n = h * w
    q = n // 4
    half = 1 << (_YUV_SHIFT - 1)
    for y in range(h):
        crow = y // 2
        for x in range(w):
            if nv12:
                iu = n + crow * w + (x // 2) * 2
                iv = iu + 1
            else:
                iu = n + crow * (w // 2) + x // 2
                iv = iu + q
            u = np.int64(flat[iu]) - 128
            v = np.int64(flat[iv]) - 128
            luma = int(flat[y * w + x]) - 16
            yy = (luma if luma > 0 else 0) * _CY + half
            r = min(max((yy + _CVR * v) >> _YUV_SHIFT, 0), 255)
            g = min(max((yy + _CVG * v + _CUG * u) >> _YUV_SHIFT, 0), 255)
            b = min(max((yy + _CUB * u) >> _YUV_SHIFT, 0), 255)
            dst[y, x, bidx] = b
            dst[y, x, 1] = g
            dst[y, x, 2 - bidx] = r


@convert_color.kernel("cpu")
def _convert_color_cpu(image: np.ndarray, *, out: np.ndarray, conversion: str) -> None:
    if conversion in _SELECT:
        _select_kernel(image, out, np.array(_SELECT[conversion], np.int64))
    elif conversion in _GRAY:
        # weights in input channel order
        order = _GRAY[conversion]
        if image.dtype.kind == "f":
            wf = np.zeros(3, np.float32)
            wf[list(order)] = _GRAY_FLOAT
            _gray_float_kernel(image, out, wf)
        else:
            wi = np.zeros(3, np.int64)
            wi[list(order)] = _GRAY_INT
            _gray_int_kernel(image, out, wi, _GRAY_SHIFT)
    else:
        _yuv420_kernel(np.ascontiguousarray(image).reshape(-1), out, *_YUV[conversion])
