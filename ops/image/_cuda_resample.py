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
from ._cuda import _gather, _grid
from ._fused import crop_window, normalize_constants, resize_crop_normalize
from ._letterbox import letterbox, letterbox_geometry
from ._pad import pad_fill
from ._resample import FRAC, Taps, horizontal_first, nearest_index, taps
from ._resize import resize

Pass = tuple[Taps, int, int, int, int]  # (table, horizontal, table row of the window's first output, along, across)


def _copy_indices(h: int, w: int, oh: int, ow: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns a same-size or ``nearest`` resize copies from."""
    return (np.arange(oh) if oh == h else nearest_index(h, oh)), (np.arange(ow) if ow == w else nearest_index(w, ow))


def _passes(ty: Taps, tx: Taps, hfirst: bool, oy0: int, ox0: int, ny: int, nx: int) -> tuple[tuple[int, int], Pass, Pass]:
    """``(intermediate height, width)`` and the two passes giving the ``ny × nx`` window at
    ``(oy0, ox0)`` of the output: the first over the source rows (or columns) the window needs."""
    if hfirst:
        used = ty.first[oy0 : oy0 + ny]  # the window's source rows (not monotonic: trimmed taps)
        r0 = int(used.min())
        return (int(used.max()) + ty.width - r0, nx), (tx, 1, ox0, 0, r0), (ty, 0, oy0, r0, 0)
    used = tx.first[ox0 : ox0 + nx]
    x0 = int(used.min())
    return (ny, int(used.max()) + tx.width - x0), (ty, 0, oy0, 0, x0), (tx, 1, ox0, x0, 0)


def _arithmetic(src: Any, out: Any, int_kernel: Any, float_kernel: Any) -> tuple[bool, Any, Any, Any, Any]:
    """``(exact, kernel, intermediate dtype, first pass's mode, last pass's mode)``: uint8 in the
    CPU's fixed point (int16 intermediate), else float32 (an integer output rounded and saturated)."""
    if np.dtype(src.dtype) == np.uint8:
        return True, int_kernel, np.int16, False, True
    vmax = float(np.iinfo(np.dtype(out.dtype)).max) if np.dtype(out.dtype).kind == "u" else 0.0
    return False, float_kernel, np.float32, 0.0, vmax


def resample_window(image: Any, out: Any, size: tuple[int, int], interpolation: str, antialias: bool, oy0: int = 0, ox0: int = 0) -> None:
    """``out[n] = resize(image[n], size)[oy0 : oy0 + out_h, ox0 : ox0 + out_w]`` on the GPU."""
    from . import _cuda_kernels as kern

    n, h, w, c = image.shape
    oh, ow = size
    ny, nx = out.shape[1], out.shape[2]
    if (oh, ow) == (h, w) or interpolation == "nearest":
        ys, xs = _copy_indices(h, w, oh, ow)
        _gather(image, out, ys[oy0 : oy0 + ny], xs[ox0 : ox0 + nx], np.zeros(c, np.dtype(image.dtype)))
        return
    ty, tx = taps(h, oh, interpolation, antialias), taps(w, ow, interpolation, antialias)
    exact, kernel, mid_dtype, first_mode, last_mode = _arithmetic(image, out, kern.resample_int_kernel, kern.resample_float_kernel)
    mid_shape, first, second = _passes(ty, tx, horizontal_first(h, w, oh, ow, ty, tx), oy0, ox0, ny, nx)
    mid = _device.scratch((n, *mid_shape, c), mid_dtype)
    for src, dst, (t, horizontal, base, along, across), mode in ((image, mid, first, first_mode), (mid, out, second, last_mode)):
        weights = _device.table(t.wq if exact else t.wf)
        kernel[_grid(dst.shape)](src, dst, _device.table(t.first), weights, bool(horizontal), base, along, across, mode)


@resize.kernel("cuda")
def _resize_cuda(image: Any, *, out: Any, interpolation: str, antialias: bool, **_: Any) -> None:
    resample_window(image, out, (out.shape[1], out.shape[2]), interpolation, antialias)


@resize_crop_normalize.kernel("cuda")
def _fused_cuda(image: Any, *, out: Any, size: int, crop: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], scale: float | None,
                interpolation: str, antialias: bool, dtype: str, layout: str) -> None:
    from ._cuda_kernels import crop_normalize_kernel

    n, h, w, c = image.shape
    m, s, k = normalize_constants(c, image.dtype, mean, std, scale)
    win = crop_window(h, w, size, crop)
    # only the crop's pixels are resampled (exactly as the whole resize would give them)
    window = _device.scratch((n, *win.shape, c), np.dtype(image.dtype))
    if window.size:
        resample_window(image, window, win.size, interpolation, antialias, *win.origin)
    crop_normalize_kernel[_grid((n, *crop))](window, out, k, _device.constant(m), _device.constant(s), *win.offset, layout == "CHW")


@letterbox.kernel("cuda")
def _letterbox_cuda(image: Any, *, out: tuple[Any, Any, Any], size: tuple[int, int], fill: tuple[float, ...], interpolation: str,
                    antialias: bool, scaleup: bool) -> None:
    from ._cuda_kernels import border_kernel

    boxed, scale, offset = out
    n, h, w, _ = image.shape
    nh, nw, top, left = letterbox_geometry(h, w, size, scaleup)
    values = _device.constant(pad_fill("image.letterbox", fill, _device.meta(image)))
    border_kernel[_grid(boxed.shape)](boxed, _device.constant(np.tile(np.array([top, left, nh, nw], np.int64), (n, 1))), values)
    resample_window(image, boxed[:, top : top + nh, left : left + nw], (nh, nw), interpolation, antialias)
    _mapping_to_device(scale, offset, [(h, w, nh, nw, top, left)] * n)


def _mapping_to_device(scale: Any, offset: Any, geometry: list[tuple[int, int, int, int, int, int]]) -> None:
    """The letterbox's ``scale`` and ``offset`` rows (N × 2), as the CPU computes them."""
    stream = _device.stream()
    scale.copy_to_device(np.array([[nw / w, nh / h] for h, w, nh, nw, _, _ in geometry], np.float32), stream=stream)
    offset.copy_to_device(np.array([[left, top] for _, _, _, _, top, left in geometry], np.float32), stream=stream)


# -- ragged batches: one launch per pass for images of different sizes ---------------------------


def _one_tap(index: np.ndarray) -> Taps:
    """A table that copies: output ``i`` is source ``index[i]`` (identity or nearest), exactly."""
    n = len(index)
    return Taps(np.asarray(index, np.int64), np.ones((n, 1)), np.full((n, 1), 1 << FRAC, np.int32), np.ones((n, 1), np.float32), False)


def _plan_pass(h: int, w: int, oh: int, ow: int, interpolation: str, antialias: bool) -> tuple[Taps, Taps, bool]:
    """``(vertical table, horizontal table, horizontal first)`` for one image, as its dense resize."""
    if (oh, ow) == (h, w) or interpolation == "nearest":
        ys, xs = _copy_indices(h, w, oh, ow)
        return _one_tap(ys), _one_tap(xs), True
    ty, tx = taps(h, oh, interpolation, antialias), taps(w, ow, interpolation, antialias)
    return ty, tx, horizontal_first(h, w, oh, ow, ty, tx)


def _padded(items: list[Any]) -> tuple[Any, ...]:
    """``items`` as a tuple whose length is a power of two (the last repeated): the kernels compile
    once per tuple length, so a batcher's many batch sizes share a few."""
    size = 1 << max(len(items) - 1, 0).bit_length()
    return tuple(items) + (items[-1],) * (size - len(items))


Box = tuple[int, int, int, int]  # (height, width, top, left): where in its destination an image's result goes


def _ragged_pass(kernel: Any, srcs: list[Any], dsts: list[Any], passes: list[Pass], exact: bool, mode: Any, boxes: list[Box]) -> None:
    """One launch of a separable pass over every image: image ``i`` runs ``passes[i]`` and writes
    ``boxes[i]`` of ``dsts[i]``."""
    width = max(t.width for t, *_ in passes)
    first = np.concatenate([t.first for t, *_ in passes])
    wts = np.zeros((len(first), width), np.int32 if exact else np.float32)
    meta = np.zeros((len(_padded(srcs)), 10), np.int64)
    at = 0
    for i, ((t, horizontal, base, along, across), box) in enumerate(zip(passes, boxes)):
        wts[at : at + len(t.first), : t.width] = t.wq if exact else t.wf
        meta[i] = (1, horizontal, at + base, along, across, t.width, *box)
        at += len(t.first)
    grid, block = _device.grid_2d(max(b[1] for b in boxes), max(b[0] for b in boxes), len(meta))
    kernel[grid, block, _device.stream()](_padded(srcs), _padded(dsts), _device.to_device(first), _device.to_device(wts),
                                          _device.to_device(meta), mode)


def _contiguous(images: list[Any]) -> list[Any]:
    """The images, strided ones copied to contiguous scratch (the kernels take one array type)."""
    from ._cuda_kernels import copy3_kernel

    out = []
    for img in images:
        if not img.is_c_contiguous():
            dense = _device.scratch(img.shape, np.dtype(img.dtype))
            copy3_kernel[(*_device.grid_2d(img.shape[1], img.shape[0], 1), _device.stream())](img, dense)
            img = dense
        out.append(img)
    return out


def resample_ragged(images: list[Any], outs: list[Any], sizes: list[tuple[int, int]], interpolation: str, antialias: bool,
                    origins: list[tuple[int, int]] | None = None, boxes: list[Box] | None = None) -> None:
    """``resize(images[i], sizes[i])``'s window at ``origins[i]`` into ``boxes[i]`` of ``outs[i]``
    (default: all of it) for H W C images of any sizes: two launches for the whole batch, each
    image's arithmetic its dense resize's. ``outs`` are C-contiguous."""
    from . import _cuda_kernels as kern

    images = _contiguous(images)
    boxes = boxes or [(o.shape[0], o.shape[1], 0, 0) for o in outs]
    kernels = (kern.resample_int_varshape_kernel, kern.resample_float_varshape_kernel)
    exact, kernel, mid_dtype, first_mode, last_mode = _arithmetic(images[0], outs[0], *kernels)
    mids, firsts, seconds = [], [], []
    for i, (img, box, (oh, ow)) in enumerate(zip(images, boxes, sizes)):
        h, w, c = img.shape
        oy0, ox0 = origins[i] if origins else (0, 0)
        ty, tx, hfirst = _plan_pass(h, w, oh, ow, interpolation, antialias)
        mid_shape, first, second = _passes(ty, tx, hfirst, oy0, ox0, box[0], box[1])
        mids.append(_device.scratch((*mid_shape, c), mid_dtype))
        firsts.append(first)
        seconds.append(second)
    _ragged_pass(kernel, images, mids, firsts, exact, first_mode, [(m.shape[0], m.shape[1], 0, 0) for m in mids])
    _ragged_pass(kernel, mids, outs, seconds, exact, last_mode, boxes)


def _items(out: Any) -> list[Any]:
    """A batched kernel's output as per-image views (a dense batch, or a list)."""
    return list(out) if isinstance(out, list) else [out[i] for i in range(out.shape[0])]


@resize.kernel("cuda", batched=True)
def _resize_cuda_ragged(image: list[Any], *, out: Any, interpolation: str, antialias: bool, **_: Any) -> None:
    outs = _items(out)
    resample_ragged(image, outs, [(o.shape[0], o.shape[1]) for o in outs], interpolation, antialias)


@resize_crop_normalize.kernel("cuda", batched=True)
def _fused_cuda_ragged(image: list[Any], *, out: Any, size: int, crop: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...],
                       scale: float | None, interpolation: str, antialias: bool, dtype: str, layout: str) -> None:
    from ._cuda_kernels import crop_normalize_varshape_kernel

    m, s, k = normalize_constants(image[0].shape[2], image[0].dtype, mean, std, scale)
    wins = [crop_window(img.shape[0], img.shape[1], size, crop) for img in image]
    windows = [_device.scratch((*win.shape, img.shape[2]), np.dtype(img.dtype)) for img, win in zip(image, wins)]
    resample_ragged(image, windows, [win.size for win in wins], interpolation, antialias, [win.origin for win in wins])
    crop_normalize_varshape_kernel[(*_device.grid_2d(crop[1], crop[0], len(image)), _device.stream())](
        _padded(windows), out, k, _device.constant(m), _device.constant(s), _device.to_device(np.array([win.offset for win in wins], np.int64)),
        layout == "CHW")


@letterbox.kernel("cuda", batched=True)
def _letterbox_cuda_ragged(image: list[Any], *, out: tuple[Any, Any, Any], size: tuple[int, int], fill: tuple[float, ...],
                           interpolation: str, antialias: bool, scaleup: bool) -> None:
    """Images of different sizes into one dense batch of boxes: one launch for the bars, two for
    the resampling (each image into its own box), whatever the sizes."""
    from ._cuda_kernels import border_kernel

    boxed, scale, offset = out
    if isinstance(boxed, list):  # images with different channel counts: one at a time
        for i, img in enumerate(image):
            _letterbox_cuda(img.reshape((1, *img.shape)), out=tuple(o[i].reshape((1, *o[i].shape)) for o in out), size=size, fill=fill,
                            interpolation=interpolation, antialias=antialias, scaleup=scaleup)
        return
    geometry = [(img.shape[0], img.shape[1], *letterbox_geometry(img.shape[0], img.shape[1], size, scaleup)) for img in image]
    values = _device.constant(pad_fill("image.letterbox", fill, _device.meta(image[0])))
    boxes = np.array([[top, left, nh, nw] for _, _, nh, nw, top, left in geometry], np.int64)
    border_kernel[_grid(boxed.shape)](boxed, _device.to_device(boxes), values)
    # each image into its box of its own (contiguous) slice of the batch: one array type for the kernels
    resample_ragged(image, [boxed[i] for i in range(len(image))], [(nh, nw) for _, _, nh, nw, _, _ in geometry], interpolation,
                    antialias, boxes=[(nh, nw, top, left) for _, _, nh, nw, top, left in geometry])
    _mapping_to_device(scale, offset, geometry)
