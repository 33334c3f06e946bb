"""Score threshold and per-class non-maximum suppression (torchvision's ``batched_nms``, exactly).

The NMS kernel is a Numba loop over the boxes of each class in decreasing score order. It keeps
the very boxes ``torchvision.ops.batched_nms`` keeps, in the same order, including the rounding
of torchvision's small-input path (see ``nms``'s doc).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._device import Meta
from .._errors import InputError
from .._op import Op
from .._params import Float, Int, Optional, Param
from .._spec import TensorSpec
from ..image._common import jit
from ._common import BOX_DTYPES, CLASS_DTYPES, boxes_spec, random_boxes

__all__ = ["TORCHVISION_SMALL_INPUT", "nms", "nms_indices"]

#: torchvision's CPU ``batched_nms`` takes its "coordinate trick" path up to 4000 coordinates.
TORCHVISION_SMALL_INPUT = 1000

_NAME = "detect.nms"


def check_rows(op_name: str, n: int, **arrays: np.ndarray | Meta) -> None:
    for name, a in arrays.items():
        if a.shape[0] != n:
            raise InputError(f"{op_name}: input {name!r} has {a.shape[0]} rows; 'boxes' has {n} (one row per box)")


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """Rows whose four coordinates are all finite."""
    return np.asarray(np.isfinite(boxes).all(axis=1))


def prepare(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(kept rows, boxes as torchvision's IoU sees them, scores, int64 classes)`` of the valid boxes.

    Rows with a non-finite score or coordinate are dropped. For at most
    ``TORCHVISION_SMALL_INPUT`` boxes, torchvision shifts each box by ``class * (max coordinate + 1)``
    in the boxes' dtype and computes IoU on the shifted (rounded) coordinates; so does this.
    """
    rows = np.flatnonzero(np.isfinite(scores) & valid_boxes(boxes))
    b, s, c = boxes[rows], scores[rows], classes[rows].astype(np.int64)
    if 0 < len(rows) <= TORCHVISION_SMALL_INPUT:
        step = b.max() + b.dtype.type(1)
        b = b + (c.astype(b.dtype) * step)[:, None]
    return rows, np.ascontiguousarray(b), np.ascontiguousarray(s), c


def _greedy_reference(b: np.ndarray, s: np.ndarray, c: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Greedy NMS in one pass over all boxes in decreasing score order (ties: lower index first)."""
    order = score_order(s)
    rank = np.empty(len(s), np.int64)
    rank[order] = np.arange(len(s))
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, k]) for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(s), bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        if len(keep) == limit:
            break
        j = np.flatnonzero((c == c[i]) & (rank > rank[i]) & ~suppressed)
        w = np.maximum(np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]), 0)
        h = np.maximum(np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]), 0)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (area[i] + area[j] - inter)
        suppressed[j[iou.astype(np.float64) > iou_threshold]] = True  # NaN (0 / 0) suppresses nothing
    return np.array(keep, np.int64)


@jit
def _group_by_class(order: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``order`` stably regrouped by class id (a counting sort when the ids span a small range)."""
    n = order.shape[0]
    lo, hi = c.min(), c.max()
    if hi - lo > 4 * n + 1024:
        return order[np.argsort(c[order], kind="mergesort")]
    starts = np.zeros(hi - lo + 2, np.int64)
    for k in range(n):
        starts[c[k] - lo + 1] += 1
    for k in range(1, starts.shape[0]):
        starts[k] += starts[k - 1]
    grouped = np.empty(n, np.int64)
    for k in range(n):
        i = order[k]
        slot = c[i] - lo
        grouped[starts[slot]] = i
        starts[slot] += 1
    return grouped


@jit
def _greedy(b: np.ndarray, order: np.ndarray, c: np.ndarray, iou_threshold: float, limit: int, zero: Any, one: Any) -> np.ndarray:
    """Greedy NMS class by class, each in ``order`` (decreasing score); kept rows in that order.

    ``zero`` and ``one`` are of the boxes' dtype, so that all arithmetic stays in it.
    """
    n = order.shape[0]
    grouped = _group_by_class(order, c)
    # the boxes in visiting order, contiguous
    x1, y1, x2, y2 = b[grouped, 0], b[grouped, 1], b[grouped, 2], b[grouped, 3]
    area = (x2 - x1) * (y2 - y1)
    cls = c[grouped]
    suppressed = np.zeros(n, np.bool_)
    kept = np.zeros(n, np.bool_)
    start = 0
    while start < n:
        end = start + 1
        while end < n and cls[end] == cls[start]:
            end += 1
        for i in range(start, end):
            if suppressed[i]:
                continue
            kept[grouped[i]] = True
            ix1, iy1, ix2, iy2, ia = x1[i], y1[i], x2[i], y2[i], area[i]
            # branch-free (so it vectorizes): IoU with every later box of the class, suppressed or not
            for j in range(i + 1, end):
                # std::max / std::min as torchvision's kernel, in the boxes' dtype
                xx1 = x1[j] if ix1 < x1[j] else ix1
                yy1 = y1[j] if iy1 < y1[j] else iy1
                xx2 = x2[j] if x2[j] < ix2 else ix2
                yy2 = y2[j] if y2[j] < iy2 else iy2
                w = xx2 - xx1
                h = yy2 - yy1
                w = w if w > zero else zero
                h = h if h > zero else zero
                inter = w * h
                union = ia + area[j] - inter
                # union <= 0 only when inter is 0 (zero-area or inverted boxes): torchvision's
                # 0 / 0 = NaN or -0 suppresses nothing
                safe = union if union > zero else one
                suppressed[j] |= (union > zero) & (inter / safe > iou_threshold)
        start = end
    size = n if limit < 0 or limit > n else limit
    out = np.empty(size, np.int64)
    count = 0
    for k in range(n):
        if count == size:
            break
        i = order[k]
        if kept[i]:
            out[count] = i
            count += 1
    return out[:count]


def score_order(scores: np.ndarray) -> np.ndarray:
    """Rows by decreasing score, equal scores lower row first (torchvision's stable sort)."""
    return np.argsort(-scores, kind="stable")


def nms_indices(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, max_detections: int | None = None) -> np.ndarray:
    """The Numba NMS on plain arrays (empty ones included): kept rows, highest score first."""
    rows, b, s, c = prepare(boxes, scores, classes)
    if not len(rows):
        return np.empty(0, np.int64)
    t = b.dtype.type
    return rows[_greedy(b, score_order(s), c, float(iou_threshold), -1 if max_detections is None else int(max_detections), t(0), t(1))]


def _check_inputs(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> None:
    check_rows(_NAME, boxes.shape[0], scores=scores, classes=classes)


def _reference(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, iou_threshold: float, max_detections: int | None) -> np.ndarray:
    _check_inputs(boxes, scores, classes)
    rows, b, s, c = prepare(boxes, scores, classes)
    return rows[_greedy_reference(b, s, c, iou_threshold, -1 if max_detections is None else max_detections)]


def example_nms_case(rng: np.random.Generator, dtype: Any, n: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random boxes (often heavily overlapping), distinct scores with some NaN/inf, and classes."""
    n = int(rng.integers(1, 400)) if n is None else n
    if rng.random() < 0.5:  # clusters of jittered copies: heavy overlap
        centres = random_boxes(rng, max(1, n // 8), np.float64, degenerate=False)
        boxes = centres[rng.integers(0, len(centres), n)] + rng.normal(0, rng.uniform(0.5, 20), (n, 4))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
        boxes = np.abs(boxes).astype(dtype)
    else:
        boxes = random_boxes(rng, n, dtype, extent=float(rng.choice([1.0, 640.0, 4000.0])))
    scores = ((rng.permutation(n) + rng.uniform(0, 0.5)) / n).astype(dtype)  # distinct
    bad = rng.random(n)
    scores[bad < 0.03] = np.nan
    scores[(bad >= 0.03) & (bad < 0.05)] = np.inf
    boxes[(bad >= 0.05) & (bad < 0.06), int(rng.integers(4))] = np.nan
    classes = rng.integers(0, int(rng.choice([1, 3, 80])), n).astype(CLASS_DTYPES[int(rng.integers(2))])
    return boxes, scores, classes


def _examples_params(rng: np.random.Generator, *inputs: Any) -> dict[str, Any]:
    return {
        "iou_threshold": float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0])) if rng.random() < 0.3 else float(rng.uniform(0, 1)),
        "max_detections": None if rng.random() < 0.5 else int(rng.integers(1, 50)),
    }


nms = Op(
    _NAME,
    doc="""Per-class non-maximum suppression: exactly the rows ``torchvision.ops.batched_nms`` keeps, in its order.

Boxes are ``xyxy``. Rows with a NaN or ±inf score, or a non-finite coordinate, are dropped first;
the result equals ``batched_nms`` run on the remaining rows (indices refer to the input rows).
Then, class by class, the boxes are visited in decreasing score order (equal scores: lower row
first, as torchvision's stable sort); a visited box that is not suppressed is kept and suppresses
every later box of its class whose IoU with it is greater than ``iou_threshold`` (strictly).
IoU is computed as torchvision's CPU kernel does, in the boxes' dtype: ``inter = max(0, min(x2) -
max(x1)) * max(0, min(y2) - max(y1))``, ``iou = inter / (area_i + area_j - inter)`` compared in
float64. A zero-area or inverted box (x2 < x1 or y2 < y1) has IoU 0 with every box: it is kept
unless dropped, and suppresses nothing. Boxes of different classes never suppress each other.

torchvision's CPU path for at most 1000 boxes shifts every box by ``class * (max coordinate + 1)``
and computes IoU on the shifted, rounded coordinates; this op does the same for at most 1000
valid rows, so even IoUs within a rounding error of the threshold agree. (For boxes with negative
coordinates that shift can make torchvision suppress across classes; this op never does.)

Output: ``keep``, int64 row indices sorted by decreasing score (ties: lower row first), at most
``max_detections`` of them (null: all). The count varies per image, so a batch gives a list; for
fixed-shape outputs (a server's) use ``detect.multiclass_nms``. An empty ``boxes`` input is refused
by the op call (``InputError``); ``nms_indices`` takes empty arrays and returns an empty result.""",
    inputs=[
        boxes_spec(doc="xyxy boxes"),
        TensorSpec("scores", BOX_DTYPES, "N", "one score per box"),
        TensorSpec("classes", CLASS_DTYPES, "N", "one class id per box"),
    ],
    outputs=[TensorSpec("keep", (np.int64,), "K", "kept rows, highest score first")],
    params=[
        Param("iou_threshold", Float(0.0, 1.0), 0.5, "a box is suppressed when its IoU with a kept box of its class is greater than this"),
        Param("max_detections", Optional(Int(min=1)), None, "keep at most this many (the highest scores); null: all"),
    ],
    reference=_reference,
    example_inputs=lambda rng, dtype: example_nms_case(rng, dtype),
    example_params=_examples_params,
)


@nms.kernel("cpu")
def _nms_cpu(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, iou_threshold: float, max_detections: int | None) -> np.ndarray:
    _check_inputs(boxes, scores, classes)
    return nms_indices(boxes, scores, classes, iou_threshold, max_detections)
