"""Pixel formats: normalize (to float with mean/std), to_dtype (torchvision's scaling) and layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Bool, Choice, Float, Floats, Optional, Param
from ._common import image_spec, jit

__all__ = ["default_scale", "layout", "normalize", "per_channel", "to_dtype"]

ShapeDtypes = list[tuple[tuple[int, ...], np.dtype]]
_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
#: every dtype to_dtype produces and layout moves.
ALL_DTYPES = tuple(np.dtype(d) for d in (np.uint8, np.uint16, np.float16, np.float32, np.float64))


def default_scale(dtype: np.dtype) -> float:
    """What ``normalize`` multiplies by when ``scale`` is null: 1/255, 1/65535 or 1 (floats)."""
    dt = np.dtype(dtype)
    return 1.0 / float(np.iinfo(dt).max) if dt.kind == "u" else 1.0


def per_channel(op_name: str, param: str, values: Sequence[float], channels: int) -> np.ndarray:
    """``values`` as float32, one per channel: one value broadcasts, else there must be ``channels``."""
    if len(values) not in (1, channels):
        raise InputError(
            f"{op_name}: parameter {param!r} has {len(values)} values but the image has {channels} channels; "
            f"expected 1 value or {channels} (one per channel)"
        )
    return np.ascontiguousarray(np.broadcast_to(np.asarray(values, np.float32), (channels,)))


# -- normalize -------------------------------------------------------------------------------


def _normalize_reference(image: np.ndarray, *, mean: tuple[float, ...], std: tuple[float, ...], scale: float | None, dtype: str) -> np.ndarray:
    c = image.shape[2]
    m = per_channel("image.normalize", "mean", mean, c)
    s = per_channel("image.normalize", "std", std, c)
    k = np.float32(default_scale(image.dtype) if scale is None else scale)
    # this exact float32 form is the contract: fused ops' references compose with it
    out = (image.astype(np.float32) * k - m) / s
    with np.errstate(over="ignore"):  # beyond float16's range is ±inf
        return out.astype(dtype)


def _normalize_infer(image: np.ndarray, *, mean: tuple[float, ...], std: tuple[float, ...], scale: float | None, dtype: str) -> ShapeDtypes:
    c = image.shape[2]
    per_channel("image.normalize", "mean", mean, c)
    per_channel("image.normalize", "std", std, c)
    return [(image.shape, np.dtype(dtype))]


def _normalize_check(params: dict[str, Any]) -> None:
    m, s = len(params["mean"]), len(params["std"])
    if m > 1 and s > 1 and m != s:
        raise ValueError(f"parameters 'mean' ({m} values) and 'std' ({s} values) must have the same length, or one value")
    check_float32_std(params["std"])


def check_float32_std(std: Sequence[float]) -> None:
    """The kernels divide in float32: a std that rounds to 0 (or inf) there is no std at all."""
    for v in std:
        f = np.float32(v)
        if not (0 < f < np.inf):
            raise ValueError(f"parameter 'std': {v!r} is {f} in float32; expected a float32-representable positive value")


def _normalize_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    c = image.shape[2]
    params: dict[str, Any] = {
        "mean": [float(v) for v in rng.uniform(0, 1, size=1 if rng.random() < 0.3 else c)],
        "std": [float(v) for v in rng.uniform(0.1, 1, size=1 if rng.random() < 0.3 else c)],
        "dtype": str(rng.choice(["float32", "float16"])),
    }
    if rng.random() < 0.3:
        params["scale"] = default_scale(image.dtype) * float(rng.uniform(0.5, 2))  # within float16's range
    return params


normalize = Op(
    "image.normalize",
    doc="""Convert to float and normalise per channel: ``(x * scale - mean) / std``.

Computed in float32 exactly as ``(x.astype(float32) * float32(scale) - mean_f32) / std_f32``
(IEEE float32, no fused multiply-add), then rounded to ``dtype`` (float32 or float16, round to
nearest even). ``scale`` defaults to 1/255 for uint8, 1/65535 for uint16 and 1 for float32, so
``normalize(x, mean, std)`` equals torchvision v2 ``ToDtype(float32, scale=True)`` followed by
``Normalize(mean, std)``. ``mean``/``std`` have one value (every channel) or one per channel;
another count is an InputError when the image arrives.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=(np.float32, np.float16))],
    params=[
        Param("mean", Floats(), doc="subtracted after scaling: one value or one per channel"),
        Param("std", Floats(positive=True), doc="divides after subtracting the mean: one value or one per channel"),
        Param("scale", Optional(Float()), None, "multiplies the input first; null: 1/255 (uint8), 1/65535 (uint16), 1 (float)"),
        Param("dtype", Choice(("float32", "float16")), "float32", "the output dtype"),
    ],
    reference=_normalize_reference,
    infer=_normalize_infer,
    check=_normalize_check,
    tolerance={"float16": 4e-3},  # one float16 ulp below 8, for kernels that contract to FMA
    example_params=_normalize_examples,
)


@jit
def _normalize_kernel(src: np.ndarray, dst: np.ndarray, scale: np.float32, mean: np.ndarray, std: np.ndarray) -> None:
    h, w, c = src.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                dst[y, x, k] = (np.float32(src[y, x, k]) * scale - mean[k]) / std[k]


@normalize.kernel("cpu")
def _normalize_cpu(image: np.ndarray, *, out: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], scale: float | None, dtype: str) -> None:
    c = image.shape[2]
    m = per_channel("image.normalize", "mean", mean, c)
    s = per_channel("image.normalize", "std", std, c)
    k = np.float32(default_scale(image.dtype) if scale is None else scale)
    # Numba has no float16 on the CPU: compute float32, then let NumPy round
    dst = out if out.dtype == np.float32 else np.empty(out.shape, np.float32)
    _normalize_kernel(image, dst, k, m, s)
    if dst is not out:
        with np.errstate(over="ignore"):
            out[...] = dst


# -- to_dtype --------------------------------------------------------------------------------


def _to_dtype_reference(image: np.ndarray, *, dtype: str, scale: bool) -> np.ndarray:
    src, dst = image.dtype, np.dtype(dtype)
    if src == dst:
        return image.copy()
    if dst.kind == "f":
        if src.kind == "u" and scale:
            if dst == np.float64:
                return image.astype(np.float64) * (1.0 / np.iinfo(src).max)
            return (image.astype(np.float32) * np.float32(1.0 / np.iinfo(src).max)).astype(dst)
        with np.errstate(over="ignore"):
            return image.astype(dst)
    hi = np.iinfo(dst).max
    if src.kind == "f":
        v = image * np.float32(hi + 1.0 - 1e-3) if scale else image
        return np.clip(np.where(np.isnan(v), 0, v), 0, hi).astype(dst)
    if scale:
        shift = 8 * (src.itemsize - dst.itemsize)
        wide = image.astype(np.int64)
        return (wide >> shift if shift > 0 else wide << -shift).astype(dst)
    return (np.minimum(image, hi) if src.itemsize > dst.itemsize else image).astype(dst)


def _to_dtype_infer(image: np.ndarray, *, dtype: str, scale: bool) -> ShapeDtypes:
    return [(image.shape, np.dtype(dtype))]


def _to_dtype_examples(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
    dtype = str(rng.choice([d.name for d in ALL_DTYPES]))
    # unscaled uint16 -> float16 gives inf from 65520 up, which the kit's comparison rejects
    scale = bool(rng.random() < 0.7) or (image.dtype == np.uint16 and dtype == "float16")
    return {"dtype": dtype, "scale": scale}


def _to_dtype_inputs(rng: np.random.Generator, dtype: np.dtype) -> tuple[Any, ...]:
    from ._common import random_image

    image = random_image(rng, dtype)
    if image.dtype.kind == "f":
        # outside [0, 1] and NaN too: saturation is part of the contract
        image = (image * 1.4 - 0.2).astype(image.dtype)
        image.flat[:: max(1, image.size // 3)] = np.nan
    return (image,)


to_dtype = Op(
    "image.to_dtype",
    doc="""Convert to ``dtype``; with ``scale`` (default) also map the value range, as torchvision v2
``to_dtype(image, dtype, scale=True)``:

- integer → float: ``x * (1 / max_in)`` (max 255 or 65535), computed as
  ``float32(x) * float32(1 / max_in)`` for float32/float16 (then rounded to float16) and in float64
  for float64. torchvision's uint16 → float16 goes through a float16 intermediate (so values of
  65520 and up become inf); here it is computed in float32 and rounded once.
- float → integer: ``trunc(x * float32(max_out + 1 - 0.001))`` in float32, as torchvision,
  then saturated to ``[0, max_out]`` (NaN → 0). torchvision does not saturate (out-of-range
  values wrap or are undefined). On ``[0, 1]`` the results are identical except ``1.0`` → uint16:
  ``float32(65535.999)`` is 65536, which torchvision wraps to 0; here it is 65535 (``1.0`` → 255
  for uint8 in both).
- integer → integer: bit shifts, ``uint8 → uint16`` is ``x << 8``, ``uint16 → uint8`` is ``x >> 8``.
- float → float: a plain cast (round to nearest; float16 overflow gives ±inf).

Without ``scale``: a plain cast, except that conversions to an integer dtype truncate toward zero
and saturate to the dtype's range (NaN → 0) where torchvision wraps. Same dtype: a copy. Exact.""",
    inputs=[image_spec()],
    outputs=[image_spec(dtypes=ALL_DTYPES)],
    params=[
        Param("dtype", Choice(tuple(d.name for d in ALL_DTYPES)), "float32", "the output dtype"),
        Param("scale", Bool(), True, "map the value range ([0, max] integers ↔ [0, 1] floats)"),
    ],
    reference=_to_dtype_reference,
    infer=_to_dtype_infer,
    tolerance={"f": 0.0},
    example_params=_to_dtype_examples,
    example_inputs=_to_dtype_inputs,
)


@jit
def _int_to_f32_kernel(src: np.ndarray, dst: np.ndarray, scale: np.float32) -> None:
    h, w, c = src.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                dst[y, x, k] = np.float32(src[y, x, k]) * scale


@jit
def _int_to_f64_kernel(src: np.ndarray, dst: np.ndarray, scale: float) -> None:
    h, w, c = src.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                dst[y, x, k] = np.float64(src[y, x, k]) * scale


@jit
def _float_to_int_kernel(src: np.ndarray, dst: np.ndarray, mul: np.float32, hi: int) -> None:
    fhi = np.float32(hi)
    h, w, c = src.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                v = src[y, x, k] * mul
                if v >= fhi:
                    dst[y, x, k] = hi
                elif v > 0:  # NaN fails both tests and becomes 0
                    dst[y, x, k] = int(v)
                else:
                    dst[y, x, k] = 0


@jit
def _int_to_int_kernel(src: np.ndarray, dst: np.ndarray, right: int, left: int, hi: int) -> None:
    h, w, c = src.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                v = (np.int64(src[y, x, k]) >> right) << left
                dst[y, x, k] = v if v < hi else hi


@to_dtype.kernel("cpu")
def _to_dtype_cpu(image: np.ndarray, *, out: np.ndarray, dtype: str, scale: bool) -> None:
    src, dst = image.dtype, out.dtype
    if src == dst or (dst.kind == "f" and not (src.kind == "u" and scale)):
        with np.errstate(over="ignore"):
            out[...] = image  # a copy or a plain float cast
    elif dst.kind == "f":
        k = 1.0 / np.iinfo(src).max
        if dst == np.float64:
            _int_to_f64_kernel(image, out, k)
        else:
            buf = out if dst == np.float32 else np.empty(out.shape, np.float32)  # no float16 in Numba
            _int_to_f32_kernel(image, buf, np.float32(k))
            if buf is not out:
                out[...] = buf
    elif src.kind == "f":
        hi = int(np.iinfo(dst).max)
        _float_to_int_kernel(image, out, np.float32(hi + 1.0 - 1e-3 if scale else 1.0), hi)
    else:
        shift = 8 * (src.itemsize - dst.itemsize) if scale else 0
        _int_to_int_kernel(image, out, max(shift, 0), max(-shift, 0), int(np.iinfo(dst).max))


# -- layout ----------------------------------------------------------------------------------


def _layout_reference(image: np.ndarray, *, to: str) -> np.ndarray:
    axes = (2, 0, 1) if to == "CHW" else (1, 2, 0)
    return np.ascontiguousarray(np.transpose(image, axes))


def _layout_infer(image: np.ndarray, *, to: str) -> ShapeDtypes:
    a, b, c = image.shape
    return [((c, a, b) if to == "CHW" else (b, c, a), image.dtype)]


@jit
def _to_chw_kernel(src: np.ndarray, dst: np.ndarray) -> None:
    c, h, w = dst.shape
    for k in range(c):
        for y in range(h):
            for x in range(w):
                dst[k, y, x] = src[y, x, k]


@jit
def _to_hwc_kernel(src: np.ndarray, dst: np.ndarray) -> None:
    h, w, c = dst.shape
    for y in range(h):
        for x in range(w):
            for k in range(c):
                dst[y, x, k] = src[k, y, x]


layout = Op(
    "image.layout",
    doc="""Transpose between channels-last and channels-first: ``to="CHW"`` turns an ``H W C`` image
into a contiguous ``C H W`` array (the model's layout); ``to="HWC"`` turns ``C H W`` back into
``H W C``. A dense batch ``N H W C`` becomes ``N C H W``. Accepts uint8, uint16, float16, float32
and float64 (so it can follow ``normalize(..., dtype="float16")``); exact.""",
    inputs=[image_spec(dtypes=ALL_DTYPES, shape="A B C", doc="an HWC image (to CHW) or a CHW array (to HWC)")],
    outputs=[image_spec(dtypes=None, shape="A2 B2 C2", doc="the transposed, contiguous array")],
    params=[Param("to", Choice(("CHW", "HWC")), "CHW", "the output layout; the input is the other one")],
    reference=_layout_reference,
    infer=_layout_infer,
    example_params=lambda rng, image: {"to": str(rng.choice(["CHW", "HWC"]))},
)


@layout.kernel("cpu")
def _layout_cpu(image: np.ndarray, *, out: np.ndarray, to: str) -> None:
    bits = _BITS[image.dtype.itemsize]  # a move: one compiled kernel per item size, float16 included
    (_to_chw_kernel if to == "CHW" else _to_hwc_kernel)(image.view(bits), out.view(bits))
