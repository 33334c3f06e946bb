"""The CUDA side of the detection ops (device code in ``_cuda_kernels``, imported on the first GPU
call): ``decode_anchors``, ``decode_yolo`` and ``decode_grid`` (dense batches, a thread per row or cell) and
``nms`` (one image's boxes, the CPU's decisions exactly)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _device
from ._common import FORMATS
from ._decode import decode_anchors, decode_yolo
from ._grid import _layout, decode_grid
from ._nms import TORCHVISION_SMALL_INPUT, check_rows, nms


@decode_anchors.kernel("cuda")
def _decode_anchors_cuda(deltas: Any, anchors: Any, *, out: Any, weights: tuple[float, ...], clip: float | None) -> None:
    from ._cuda_kernels import decode_anchors_kernel

    check_rows("detect.decode_anchors", deltas.shape[1], anchors=_device.Meta(anchors.shape[1:], anchors.dtype))
    t = np.dtype(deltas.dtype).type
    if np.dtype(anchors.dtype) != np.dtype(deltas.dtype):  # anchors are cast to the deltas' dtype, as on the CPU
        cast = _device.scratch(anchors.shape, deltas.dtype)
        _cast(anchors, cast)
        anchors = cast
    n, rows = deltas.shape[0], deltas.shape[1]
    w = _device.constant(weights, deltas.dtype)
    decode_anchors_kernel[(*_device.grid_2d(rows, n, 1, (128, 1)), _device.stream())](
        deltas, anchors, out, w, t(0 if clip is None else clip), clip is not None, t(0.5))


def _cast(src: Any, dst: Any) -> None:
    from ..image._cuda_kernels import cast_kernel

    # [N, R, 4] as an image batch [N, R, 4, 1]: the image ops' elementwise cast
    n, r, k = src.shape
    cast_kernel[(*_device.grid_2d(k, r, n), _device.stream())](src.reshape(n, r, k, 1), dst.reshape(n, r, k, 1))


@decode_yolo.kernel("cuda")
def _decode_yolo_cuda(prediction: Any, *, out: tuple[Any, Any], objectness: bool, transposed: bool, box_format: str, sigmoid: bool) -> None:
    from ._cuda_kernels import decode_yolo_kernel

    t = np.dtype(prediction.dtype).type
    n, rows = out[1].shape[:2]
    decode_yolo_kernel[(*_device.grid_2d(rows, n, 1, (128, 1)), _device.stream())](
        prediction, out[0], out[1], 5 if objectness else 4, FORMATS.index(box_format), sigmoid, transposed, t(0.5), t(1))


def _filled(host: np.ndarray) -> Any:
    """Scratch device memory holding a copy of ``host``."""
    dev = _device.scratch(host.shape, host.dtype)
    dev.copy_to_device(host, stream=_device.stream())
    return dev


def _read(dev: Any) -> np.ndarray:
    """``dev`` on the host, once the stream has written it."""
    stream = _device.stream()
    host = dev.copy_to_host(stream=stream)
    if stream != 0:
        stream.synchronize()
    return np.asarray(host)


@decode_grid.kernel("cuda")
def _decode_grid_cuda(features: Any, *, out: Any, stride: float, style: str, anchors: tuple[float, ...] | None) -> None:
    from ._cuda_kernels import decode_grid_kernel

    n, _, h, w = features.shape
    dt = np.dtype(features.dtype)
    a, no = _layout(_device.Meta(features.shape[1:], dt), anchors)
    t = dt.type
    pairs = np.array(anchors if anchors is not None else (1.0, 1.0), dt)
    decode_grid_kernel[(*_device.grid_2d(w, h, n * a), _device.stream())](
        features, out, no, t(stride), style == "yolov5", _device.constant(pairs[0::2]), _device.constant(pairs[1::2]),
        _device.constant(np.arange(w, dtype=dt)), _device.constant(np.arange(h, dtype=dt)), t(0.5), t(1), t(2))


@nms.kernel("cuda")
def _nms_cuda(boxes: Any, scores: Any, classes: Any, *, iou_threshold: float, max_detections: int | None) -> Any:
    """Valid rows ranked by (class, score, row); a suppression bitmask, a thread per 64 pairs; the
    greedy pass over it, a block per class; the kept rows ranked by score. Three small reads to the host (how
    many boxes are valid, their largest coordinate for the class shift, how many are kept): the
    output's length depends on the data."""
    from ._cuda_kernels import WORD, nms_kernels

    check_rows("detect.nms", boxes.shape[0], scores=scores, classes=classes)
    dtype = np.dtype(boxes.dtype)
    prepare, rank, gather, mask, scan, select = nms_kernels(dtype.name)
    stream = _device.stream()
    n = boxes.shape[0]
    valid = _device.scratch((n,), np.uint8)
    stats = _filled(np.zeros(3, np.int64))  # [valid rows, kept rows, classes]
    top = _filled(np.full(1, -np.inf, dtype))
    prepare[(*_device.grid_1d(n), stream)](boxes, scores, valid, stats, top)
    m = int(_read(stats)[0])
    if m == 0:
        return _device.empty((0,), np.int64)
    order, end, starts = _device.scratch((m,), np.int64), _device.scratch((m,), np.int64), _device.scratch((m,), np.int64)
    rank[(*_device.grid_1d(n), stream)](scores, classes, valid, order, end, starts, stats)
    step = _read(top)[0] + dtype.type(1)  # torchvision's shift for small inputs
    sb, area = _device.scratch((m, 4), dtype), _device.scratch((m,), dtype)
    gather[(*_device.grid_1d(m), stream)](boxes, classes, order, step, m <= TORCHVISION_SMALL_INPUT, sb, area)
    words = (m + WORD - 1) // WORD
    bits = _device.scratch((m, words), np.uint64)
    mask[(*_device.grid_2d(words, m, 1), stream)](sb, area, end, float(iou_threshold), bits)
    removed, kept = _filled(np.zeros(words, np.uint64)), _filled(np.zeros(m, np.uint8))
    # a block per class (at most m; the extra ones return at once), 32 threads: a class spans few words
    scan[m, 32, stream](bits, starts, end, removed, kept, stats)
    count = int(_read(stats)[1])
    size = count if max_detections is None else min(count, max_detections)
    out = _device.empty((size,), np.int64)
    if size:
        select[(*_device.grid_1d(m), stream)](scores, order, kept, _device.as_kernel_array(out))
    return out
