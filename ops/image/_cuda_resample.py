"""The CUDA side of the resampling ops: ``image.resize``, ``image.resize_crop_normalize`` and
``image.letterbox``, registered behind the same ops as their CPU kernels.

They share the CPU's tables (``_resample.taps``: the same taps, the same 14-bit weights, the same
pass order), uploaded once per device, and run two launches of one separable pass each over the
window of the output they need: uint8 in the CPU's fixed point (bit-exact), uint16 and float32 in
float32. ``nearest`` is a gather through the CPU's index maps. Inputs are dense batches ``N H W C``
as the dispatch gives them; intermediates come from the caller's allocator (torch's or CuPy's pool).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _device
from ._convert import default_scale, per_channel
from ._crop import center_crop_offsets
from ._cuda import _gather, _grid
from ._fused import NAME as FUSED
from ._fused import resize_crop_normalize
from ._letterbox import letterbox, letterbox_geometry
from ._pad import pad_fill
from ._resample import horizontal_first, nearest_index, taps
from ._resize import output_size, resize


def resample_window(image: Any, out: Any, size: tuple[int, int], interpolation: str, antialias: bool, oy0: int = 0, ox0: int = 0) -> None:
    """``out[n] = resize(image[n], size)[oy0 : oy0 + out_h, ox0 : ox0 + out_w]`` on the GPU."""
    from . import _cuda_kernels as kern

    _, h, w, c = image.shape
    oh, ow = size
    ny, nx = out.shape[1], out.shape[2]
    if (oh, ow) == (h, w) or interpolation == "nearest":
        ys = np.arange(oh) if oh == h else nearest_index(h, oh)
        xs = np.arange(ow) if ow == w else nearest_index(w, ow)
        _gather(image, out, ys[oy0 : oy0 + ny], xs[ox0 : ox0 + nx], np.zeros(c, np.dtype(image.dtype)))
        return
    ty, tx = taps(h, oh, interpolation, antialias), taps(w, ow, interpolation, antialias)
    exact = np.dtype(image.dtype) == np.uint8
    fy, fx = _device.table(ty.first), _device.table(tx.first)
    wy, wx = (_device.table(ty.wq), _device.table(tx.wq)) if exact else (_device.table(ty.wf), _device.table(tx.wf))
    if exact:
        kernel, mid_dtype, first_pass, last_pass = kern.resample_int_kernel, np.int16, False, True
    else:
        vmax = float(np.iinfo(np.dtype(out.dtype)).max) if np.dtype(out.dtype).kind == "u" else 0.0
        kernel, mid_dtype, first_pass, last_pass = kern.resample_float_kernel, np.float32, 0.0, vmax  # type: ignore[assignment]
    rows = ty.first[oy0 : oy0 + ny]  # the window's source rows (windows are not monotonic: trimmed taps)
    cols = tx.first[ox0 : ox0 + nx]
    n = image.shape[0]
    if horizontal_first(h, w, oh, ow, ty, tx):
        r0 = int(rows.min())
        mid = _device.scratch((n, int(rows.max()) + ty.width - r0, nx, c), mid_dtype)
        kernel[_grid(mid.shape)](image, mid, fx, wx, True, ox0, 0, r0, first_pass)
        kernel[_grid(out.shape)](mid, out, fy, wy, False, oy0, r0, 0, last_pass)
    else:
        x0 = int(cols.min())
        mid = _device.scratch((n, ny, int(cols.max()) + tx.width - x0, c), mid_dtype)
        kernel[_grid(mid.shape)](image, mid, fy, wy, False, oy0, 0, x0, first_pass)
        kernel[_grid(out.shape)](mid, out, fx, wx, True, ox0, x0, 0, last_pass)


@resize.kernel("cuda")
def _resize_cuda(image: Any, *, out: Any, interpolation: str, antialias: bool, **_: Any) -> None:
    resample_window(image, out, (out.shape[1], out.shape[2]), interpolation, antialias)


@resize_crop_normalize.kernel("cuda")
def _fused_cuda(image: Any, *, out: Any, size: int, crop: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], scale: float | None,
                interpolation: str, antialias: bool, dtype: str, layout: str) -> None:
    from ._cuda_kernels import crop_normalize_kernel

    n, h, w, c = image.shape
    m = _device.to_device(per_channel(FUSED, "mean", mean, c))
    s = _device.to_device(per_channel(FUSED, "std", std, c))
    k = np.float32(default_scale(np.dtype(image.dtype)) if scale is None else scale)
    oh, ow = output_size(h, w, size, "shorter")
    top, left = center_crop_offsets(oh, ow, *crop)
    y0, y1, x0, x1 = max(top, 0), min(top + crop[0], oh), max(left, 0), min(left + crop[1], ow)
    # only the crop's pixels are resampled (exactly as the whole resize would give them)
    window = _device.scratch((n, max(y1 - y0, 0), max(x1 - x0, 0), c), np.dtype(image.dtype))
    if window.size:
        resample_window(image, window, (oh, ow), interpolation, antialias, y0, x0)
    chw = layout == "CHW"
    spatial = (n, *crop)
    crop_normalize_kernel[_grid(spatial)](window, out, k, m, s, y0 - top, x0 - left, chw)


@letterbox.kernel("cuda")
def _letterbox_cuda(image: Any, *, out: tuple[Any, Any, Any], size: tuple[int, int], fill: tuple[float, ...], interpolation: str,
                    antialias: bool, scaleup: bool) -> None:
    from ._cuda_kernels import border_kernel

    boxed, scale, offset = out
    n, h, w, _ = image.shape
    nh, nw, top, left = letterbox_geometry(h, w, size, scaleup)
    values = _device.to_device(pad_fill("image.letterbox", fill, _device.meta(image)))
    border_kernel[_grid(boxed.shape)](boxed, top, left, nh, nw, values)
    resample_window(image, boxed[:, top : top + nh, left : left + nw], (nh, nw), interpolation, antialias)
    stream = _device.stream()
    scale.copy_to_device(np.tile(np.array([nw / w, nh / h], np.float32), (n, 1)), stream=stream)
    offset.copy_to_device(np.tile(np.array([left, top], np.float32), (n, 1)), stream=stream)
