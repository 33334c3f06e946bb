"""The Numba CUDA kernels of the image ops (device code).

Every array is a dense batch ``N H W C`` (one sample is a batch of one): one thread per (column,
row, sample) — x fastest, so a warp runs along a row — with the channels in a loop, and one launch
for a whole batch. Imported on the first GPU call only: importing it imports Numba's CUDA module
(and, under ``NUMBA_ENABLE_CUDASIM=1``, its simulator, which runs these same functions; it needs
``cuda`` to be a global of this module)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from ._color import _CUB, _CUG, _CVG, _CVR, _CY, _YUV_SHIFT
from ._resample import FRAC, MID

__all__ = ["cast_kernel", "flip_kernel", "float_to_int_kernel", "gather_kernel", "int_to_double_kernel", "int_to_float_kernel", "int_to_int_kernel",
           "normalize_kernel", "to_chw_kernel", "to_hwc_kernel",
           "select_kernel", "gray_int_kernel", "gray_float_kernel", "yuv420_kernel",
           "resample_int_kernel", "resample_float_kernel", "crop_normalize_kernel", "border_kernel",
           "resample_int_varshape_kernel", "resample_float_varshape_kernel", "crop_normalize_varshape_kernel", "copy3_kernel"]


@cuda.jit(device=True)
def clamp(v: Any, lo: Any, hi: Any) -> Any:  # pragma: no cover (device code)
    """``v`` saturated to ``[lo, hi]`` (not min/max: numba's bundled CUDA target cannot compile
    the two-argument builtins from numba 0.68 on; numba-cuda can)."""
    return lo if v < lo else hi if v > hi else v


@cuda.jit
def normalize_kernel(src: Any, dst: Any, scale: Any, mean: Any, std: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < src.shape[0] and y < src.shape[1] and x < src.shape[2]:
        for k in range(src.shape[3]):
            # the CPU twin's arithmetic: float32 multiply, subtract, divide
            dst[n, y, x, k] = (np.float32(src[n, y, x, k]) * scale - mean[k]) / std[k]


@cuda.jit
def cast_kernel(src: Any, dst: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < src.shape[0] and y < src.shape[1] and x < src.shape[2]:
        for k in range(src.shape[3]):
            dst[n, y, x, k] = src[n, y, x, k]


@cuda.jit
def int_to_float_kernel(src: Any, dst: Any, scale: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < src.shape[0] and y < src.shape[1] and x < src.shape[2]:
        for k in range(src.shape[3]):
            dst[n, y, x, k] = np.float32(src[n, y, x, k]) * scale


@cuda.jit
def int_to_double_kernel(src: Any, dst: Any, scale: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < src.shape[0] and y < src.shape[1] and x < src.shape[2]:
        for k in range(src.shape[3]):
            dst[n, y, x, k] = np.float64(src[n, y, x, k]) * scale


@cuda.jit
def float_to_int_kernel(src: Any, dst: Any, mul: Any, hi: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    fhi = np.float32(hi)
    if n < src.shape[0] and y < src.shape[1] and x < src.shape[2]:
        for k in range(src.shape[3]):
            v = src[n, y, x, k] * mul
            if v >= fhi:
                dst[n, y, x, k] = hi
            elif v > 0:  # NaN fails both tests and becomes 0
                dst[n, y, x, k] = int(v)
            else:
                dst[n, y, x, k] = 0


@cuda.jit
def int_to_int_kernel(src: Any, dst: Any, right: Any, left: Any, hi: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < src.shape[0] and y < src.shape[1] and x < src.shape[2]:
        for k in range(src.shape[3]):
            v = (np.int64(src[n, y, x, k]) >> right) << left
            dst[n, y, x, k] = v if v < hi else hi


@cuda.jit
def to_chw_kernel(src: Any, dst: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < src.shape[0] and y < src.shape[1] and x < src.shape[2]:
        for k in range(src.shape[3]):
            dst[n, k, y, x] = src[n, y, x, k]


@cuda.jit
def to_hwc_kernel(src: Any, dst: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < dst.shape[0] and y < dst.shape[1] and x < dst.shape[2]:
        for k in range(dst.shape[3]):
            dst[n, y, x, k] = src[n, k, y, x]


@cuda.jit
def flip_kernel(src: Any, dst: Any, flip_y: Any, flip_x: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    h, w = src.shape[1], src.shape[2]
    if n < src.shape[0] and y < h and x < w:
        sy = h - 1 - y if flip_y else y
        sx = w - 1 - x if flip_x else x
        for k in range(src.shape[3]):
            dst[n, y, x, k] = src[n, sy, sx, k]


@cuda.jit
def gather_kernel(src: Any, dst: Any, ys: Any, xs: Any, fill: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < dst.shape[0] and y < dst.shape[1] and x < dst.shape[2]:
        sy, sx = ys[y], xs[x]
        for k in range(dst.shape[3]):
            dst[n, y, x, k] = src[n, sy, sx, k] if sy >= 0 and sx >= 0 else fill[k]


@cuda.jit
def select_kernel(src: Any, dst: Any, order: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < dst.shape[0] and y < dst.shape[1] and x < dst.shape[2]:
        for k in range(dst.shape[3]):
            dst[n, y, x, k] = src[n, y, x, order[k]]


@cuda.jit
def gray_int_kernel(src: Any, dst: Any, wts: Any, shift: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < dst.shape[0] and y < dst.shape[1] and x < dst.shape[2]:
        half = 1 << (shift - 1)
        acc = np.int64(src[n, y, x, 0]) * wts[0] + np.int64(src[n, y, x, 1]) * wts[1] + np.int64(src[n, y, x, 2]) * wts[2]
        dst[n, y, x, 0] = (acc + half) >> shift


@cuda.jit
def gray_float_kernel(src: Any, dst: Any, wts: Any) -> None:  # pragma: no cover (device code)
    x, y, n = cuda.grid(3)
    if n < dst.shape[0] and y < dst.shape[1] and x < dst.shape[2]:
        dst[n, y, x, 0] = src[n, y, x, 0] * wts[0] + src[n, y, x, 1] * wts[1] + src[n, y, x, 2] * wts[2]


@cuda.jit
def yuv420_kernel(src: Any, dst: Any, nv12: Any, bidx: Any) -> None:  # pragma: no cover (device code)
    """A YUV 4:2:0 frame ``[H*3/2, W, 1]`` (the Y plane, then NV12's interleaved UV rows or I420's U
    and V planes) → colour, BT.601 limited range in 20-bit fixed point, as the CPU twin (OpenCV's)."""
    x, y, n = cuda.grid(3)
    h, w = dst.shape[1], dst.shape[2]
    if n < dst.shape[0] and y < h and x < w:
        pixels = h * w
        crow = y // 2
        if nv12:
            iu = pixels + crow * w + (x // 2) * 2
            iv = iu + 1
        else:
            iu = pixels + crow * (w // 2) + x // 2
            iv = iu + pixels // 4
        u = np.int64(src[n, iu // w, iu % w, 0]) - 128
        v = np.int64(src[n, iv // w, iv % w, 0]) - 128
        luma = np.int64(src[n, y, x, 0]) - 16
        yy = (luma if luma > 0 else 0) * _CY + (1 << (_YUV_SHIFT - 1))
        r = clamp((yy + _CVR * v) >> _YUV_SHIFT, 0, 255)
        g = clamp((yy + _CVG * v + _CUG * u) >> _YUV_SHIFT, 0, 255)
        b = clamp((yy + _CUB * u) >> _YUV_SHIFT, 0, 255)
        dst[n, y, x, bidx] = b
        dst[n, y, x, 1] = g
        dst[n, y, x, 2 - bidx] = r


# -- resampling: one separable pass per launch over a window of the output (see _resample) -----
# A pass reads along one axis: output (y, x) uses table row t = base + x (horizontal) or base + y
# (vertical), taps ``first[t] - along + j`` on that axis and ``x + across`` / ``y + across`` on the
# other, so the same kernel serves both passes, both orders and a window of the output.


@cuda.jit
def resample_int_kernel(src: Any, dst: Any, first: Any, wts: Any, horizontal: Any, base: Any, along: Any, across: Any,
                        final: Any) -> None:  # pragma: no cover (device code)
    """uint8 fixed point: 14-bit weights; the first pass keeps 7 fraction bits clamped to
    [0, 255 << 7] (int16), the ``final`` one rounds half up and saturates to uint8: the CPU's sums
    exactly."""
    x, y, n = cuda.grid(3)
    if n < dst.shape[0] and y < dst.shape[1] and x < dst.shape[2]:
        t = base + (x if horizontal else y)
        f = first[t] - along
        row, col = y + across, x + across
        shift = FRAC + MID if final else FRAC - MID
        top = 255 if final else 255 << MID
        for k in range(dst.shape[3]):
            acc = 0
            for j in range(wts.shape[1]):
                v = src[n, row, f + j, k] if horizontal else src[n, f + j, col, k]
                acc += wts[t, j] * np.int32(v)
            r = (acc + (1 << (shift - 1))) >> shift
            dst[n, y, x, k] = clamp(r, 0, top)


@cuda.jit
def resample_float_kernel(src: Any, dst: Any, first: Any, wts: Any, horizontal: Any, base: Any, along: Any, across: Any,
                          vmax: Any) -> None:  # pragma: no cover (device code)
    """float32 sums; an integer ``dst`` (``vmax`` > 0) rounds half to even and saturates."""
    x, y, n = cuda.grid(3)
    if n < dst.shape[0] and y < dst.shape[1] and x < dst.shape[2]:
        t = base + (x if horizontal else y)
        f = first[t] - along
        row, col = y + across, x + across
        for k in range(dst.shape[3]):
            acc = np.float32(0)
            for j in range(wts.shape[1]):
                v = src[n, row, f + j, k] if horizontal else src[n, f + j, col, k]
                acc += wts[t, j] * np.float32(v)
            if vmax > 0:
                dst[n, y, x, k] = clamp(np.float64(round(acc)), 0.0, vmax)
            else:
                dst[n, y, x, k] = acc


@cuda.jit
def crop_normalize_kernel(window: Any, dst: Any, scale: Any, mean: Any, std: Any, top: Any, left: Any,
                          chw: Any) -> None:  # pragma: no cover (device code)
    """The fused op's last step: ``(v * scale - mean) / std`` in float32 for each pixel of the crop
    (``v`` the resized window's pixel at ``(y - top, x - left)``, 0 outside it), CHW or HWC."""
    x, y, n = cuda.grid(3)
    ch, cw = (dst.shape[2], dst.shape[3]) if chw else (dst.shape[1], dst.shape[2])
    if n < dst.shape[0] and y < ch and x < cw:
        wy, wx = y - top, x - left
        inside = 0 <= wy < window.shape[1] and 0 <= wx < window.shape[2]
        for k in range(window.shape[3]):
            v = np.float32(window[n, wy, wx, k]) if inside else np.float32(0)
            r = (v * scale - mean[k]) / std[k]
            if chw:
                dst[n, k, y, x] = r
            else:
                dst[n, y, x, k] = r


@cuda.jit
def border_kernel(dst: Any, boxes: Any, fill: Any) -> None:  # pragma: no cover (device code)
    """``fill`` everywhere outside image n's box ``boxes[n] = (top, left, height, width)`` (the
    letterbox's bars)."""
    x, y, n = cuda.grid(3)
    if n >= dst.shape[0]:
        return
    top, left, height, width = boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3]
    inside = top <= y < top + height and left <= x < left + width
    if n < dst.shape[0] and y < dst.shape[1] and x < dst.shape[2] and not inside:
        for k in range(dst.shape[3]):
            dst[n, y, x, k] = fill[k]


# -- ragged batches ("varshape"): one launch for images of different sizes --------------------
# ``srcs`` / ``dsts`` are tuples of per-image C-contiguous H W C arrays (one type: Numba indexes a
# tuple at run time only when its items agree), padded to a power of two by repeating the last,
# so few tuple lengths compile. Row n of ``meta`` (int64) describes image n's pass:
# [active, horizontal, base, along, across, taps, out_h, out_w, out_y, out_x]: its table rows in
# the batch's concatenated ``first`` / ``wts`` (base includes the window's offset), and the
# ``out_h × out_w`` box of ``dsts[n]`` at ``(out_y, out_x)`` it writes.


@cuda.jit
def resample_int_varshape_kernel(srcs: Any, dsts: Any, first: Any, wts: Any, meta: Any, final: Any) -> None:  # pragma: no cover
    x, y, n = cuda.grid(3)
    if n < meta.shape[0] and meta[n, 0] and y < meta[n, 6] and x < meta[n, 7]:
        src, dst = srcs[n], dsts[n]
        horizontal, base, along, across, taps = meta[n, 1], meta[n, 2], meta[n, 3], meta[n, 4], meta[n, 5]
        t = base + (x if horizontal else y)
        f = first[t] - along
        row, col = y + across, x + across
        shift = FRAC + MID if final else FRAC - MID
        top = 255 if final else 255 << MID
        for k in range(dst.shape[2]):
            acc = 0
            for j in range(taps):
                v = src[row, f + j, k] if horizontal else src[f + j, col, k]
                acc += wts[t, j] * np.int32(v)
            r = (acc + (1 << (shift - 1))) >> shift
            dst[y + meta[n, 8], x + meta[n, 9], k] = clamp(r, 0, top)


@cuda.jit
def resample_float_varshape_kernel(srcs: Any, dsts: Any, first: Any, wts: Any, meta: Any, vmax: Any) -> None:  # pragma: no cover
    x, y, n = cuda.grid(3)
    if n < meta.shape[0] and meta[n, 0] and y < meta[n, 6] and x < meta[n, 7]:
        src, dst = srcs[n], dsts[n]
        horizontal, base, along, across, taps = meta[n, 1], meta[n, 2], meta[n, 3], meta[n, 4], meta[n, 5]
        t = base + (x if horizontal else y)
        f = first[t] - along
        row, col = y + across, x + across
        for k in range(dst.shape[2]):
            acc = np.float32(0)
            for j in range(taps):
                v = src[row, f + j, k] if horizontal else src[f + j, col, k]
                acc += wts[t, j] * np.float32(v)
            if vmax > 0:
                dst[y + meta[n, 8], x + meta[n, 9], k] = clamp(np.float64(round(acc)), 0.0, vmax)
            else:
                dst[y + meta[n, 8], x + meta[n, 9], k] = acc


@cuda.jit
def copy3_kernel(src: Any, dst: Any) -> None:  # pragma: no cover (device code)
    """``dst[y, x] = src[y, x]`` for one H W C image (a strided one made contiguous)."""
    x, y = cuda.grid(2)
    if y < dst.shape[0] and x < dst.shape[1]:
        for k in range(dst.shape[2]):
            dst[y, x, k] = src[y, x, k]


@cuda.jit
def crop_normalize_varshape_kernel(windows: Any, dst: Any, scale: Any, mean: Any, std: Any, offsets: Any,
                                   chw: Any) -> None:  # pragma: no cover (device code)
    """``crop_normalize_kernel`` with each image's resized window (a tuple) at its own offset
    (``offsets[n] = [top, left]``) in the dense output."""
    x, y, n = cuda.grid(3)
    ch, cw = (dst.shape[2], dst.shape[3]) if chw else (dst.shape[1], dst.shape[2])
    if n < dst.shape[0] and y < ch and x < cw:
        window = windows[n]
        wy, wx = y - offsets[n, 0], x - offsets[n, 1]
        inside = 0 <= wy < window.shape[0] and 0 <= wx < window.shape[1]
        for k in range(window.shape[2]):
            v = np.float32(window[wy, wx, k]) if inside else np.float32(0)
            r = (v * scale - mean[k]) / std[k]
            if chw:
                dst[n, k, y, x] = r
            else:
                dst[n, y, x, k] = r
