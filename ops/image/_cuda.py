"""The CUDA side of the image ops, registered behind the same ops as their CPU kernels.

The device code lives in ``_cuda_kernels`` and is imported on the first GPU call, so importing the
ops never imports Numba's CUDA module. Each function here takes Numba device-array views of a
dense batch ``N H W C`` (one sample arrives as a batch of one; ``out`` allocated by the op's
dispatch), picks a launch shape (a thread per pixel of every sample, its channels in a loop)
and launches on the dispatch's stream (:func:`twinpipe.ops._device.stream`): the caller's torch or
CuPy stream. The arithmetic is the CPU twin's, step for step, so the two agree within the op's
tolerance (exactly where it is 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _device
from ._color import _GRAY, _GRAY_FLOAT, _GRAY_INT, _GRAY_SHIFT, _SELECT, _YUV, convert_color
from ._convert import default_scale, layout, normalize, per_channel, to_dtype
from ._crop import center_crop, center_crop_offsets, crop
from ._geometry import flip
from ._pad import pad, pad_fill, source_index


def _grid(shape: tuple[int, ...]) -> tuple[tuple[int, int, int], tuple[int, int, int], Any]:
    """Launch configuration for one thread per pixel of a batch ``N H W (C)`` (32 × 8 threads a
    block, a warp along a row), on the caller's stream."""
    return (*_device.grid_2d(shape[2], shape[1], shape[0]), _device.stream())


@normalize.kernel("cuda")
def _normalize_cuda(image: Any, *, out: Any, mean: tuple[float, ...], std: tuple[float, ...], scale: float | None, dtype: str) -> None:
    from ._cuda_kernels import normalize_kernel

    c = image.shape[3]
    m = _device.constant(per_channel("image.normalize", "mean", mean, c))
    s = _device.constant(per_channel("image.normalize", "std", std, c))
    k = np.float32(default_scale(np.dtype(image.dtype)) if scale is None else scale)
    normalize_kernel[_grid(image.shape)](image, out, k, m, s)


@to_dtype.kernel("cuda")
def _to_dtype_cuda(image: Any, *, out: Any, dtype: str, scale: bool) -> None:
    from . import _cuda_kernels as kern

    src, dst = np.dtype(image.dtype), np.dtype(out.dtype)
    launch = _grid(image.shape)
    if src == dst or (dst.kind == "f" and not (src.kind == "u" and scale)):
        kern.cast_kernel[launch](image, out)  # a copy or a plain float cast
    elif dst.kind == "f":
        k = 1.0 / np.iinfo(src).max
        if dst == np.float64:
            kern.int_to_double_kernel[launch](image, out, k)
        else:
            kern.int_to_float_kernel[launch](image, out, np.float32(k))
    elif src.kind == "f":
        hi = int(np.iinfo(dst).max)
        kern.float_to_int_kernel[launch](image, out, np.float32(hi + 1.0 - 1e-3 if scale else 1.0), hi)
    else:
        shift = 8 * (src.itemsize - dst.itemsize) if scale else 0
        kern.int_to_int_kernel[launch](image, out, max(shift, 0), max(-shift, 0), int(np.iinfo(dst).max))


@layout.kernel("cuda")
def _layout_cuda(image: Any, *, out: Any, to: str) -> None:
    from ._cuda_kernels import to_chw_kernel, to_hwc_kernel

    if to == "CHW":
        to_chw_kernel[_grid(image.shape)](image, out)
    else:
        to_hwc_kernel[_grid(out.shape)](image, out)


@flip.kernel("cuda")
def _flip_cuda(image: Any, *, out: Any, axis: str) -> None:
    from ._cuda_kernels import flip_kernel

    flip_kernel[_grid(image.shape)](image, out, axis != "horizontal", axis != "vertical")


def _gather(image: Any, out: Any, ys: np.ndarray, xs: np.ndarray, fill: np.ndarray) -> None:
    """``out[y, x] = image[ys[y], xs[x]]``, or ``fill`` where an index is -1 (the CPU's gather)."""
    from ._cuda_kernels import gather_kernel

    gather_kernel[_grid(out.shape)](image, out, _device.constant(ys), _device.constant(xs), _device.constant(fill))


def _crop_into(image: Any, out: Any, top: int, left: int) -> None:
    _, h, w, c = image.shape
    ys = source_index(h, -top, out.shape[1], "constant")
    xs = source_index(w, -left, out.shape[2], "constant")
    _gather(image, out, ys, xs, np.zeros(c, np.dtype(image.dtype)))


@crop.kernel("cuda")
def _crop_cuda(image: Any, *, out: Any, top: int, left: int, height: int, width: int) -> None:
    _crop_into(image, out, top, left)


@center_crop.kernel("cuda")
def _center_crop_cuda(image: Any, *, out: Any, size: tuple[int, int]) -> None:
    top, left = center_crop_offsets(image.shape[1], image.shape[2], *size)
    _crop_into(image, out, top, left)


@pad.kernel("cuda")
def _pad_cuda(image: Any, *, out: Any, padding: tuple[int, int, int, int], padding_mode: str, fill: tuple[float, ...]) -> None:
    top, _, left, _ = padding
    _, h, w, c = image.shape
    ys = source_index(h, top, out.shape[1], padding_mode)
    xs = source_index(w, left, out.shape[2], padding_mode)
    values = pad_fill("image.pad", fill, _device.meta(image)) if padding_mode == "constant" else np.zeros(c, np.dtype(image.dtype))
    _gather(image, out, ys, xs, values)


@convert_color.kernel("cuda")
def _convert_color_cuda(image: Any, *, out: Any, conversion: str) -> None:
    from . import _cuda_kernels as kern

    launch = _grid(out.shape)
    if conversion in _SELECT:
        kern.select_kernel[launch](image, out, _device.constant(_SELECT[conversion], np.int64))
    elif conversion in _GRAY:
        order = list(_GRAY[conversion])  # weights in input channel order
        if np.dtype(image.dtype).kind == "f":
            wf = np.zeros(3, np.float32)
            wf[order] = _GRAY_FLOAT
            kern.gray_float_kernel[launch](image, out, _device.constant(wf))
        else:
            wi = np.zeros(3, np.int64)
            wi[order] = _GRAY_INT
            kern.gray_int_kernel[launch](image, out, _device.constant(wi), _GRAY_SHIFT)
    else:
        kern.yuv420_kernel[launch](image, out, *_YUV[conversion])
