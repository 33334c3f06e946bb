"""From per-class scores to detections: score threshold, and the fixed-shape ``multiclass_nms``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._op import Op
from .._params import Bool, Float, Int, Param
from .._spec import TensorSpec
from ..image._common import jit
from ._common import BOX_DTYPES, ShapeDtypes, boxes_spec
from ._nms import _greedy, _greedy_reference, check_rows, example_nms_case, prepare, score_order, valid_boxes

__all__ = ["multiclass_nms", "score_threshold"]

_INPUTS = [
    boxes_spec(doc="xyxy boxes"),
    TensorSpec("scores", BOX_DTYPES, "N C", "one score per box and class (e.g. objectness × class probability)"),
]
_THRESHOLD_DOC = """A candidate is a (box, class) pair whose score is finite and greater than ``score_threshold``
(strictly; the threshold is rounded to the scores' dtype first, as PyTorch and NumPy compare a tensor
with a Python number), on a box whose four coordinates are finite: NaN and ±inf scores and boxes
with a non-finite coordinate are dropped. With ``multi_label`` every such pair is a candidate
(torchvision's RetinaNet/FCOS/SSD, YOLOv5's ``multi_label=True``); without it, only each box's best
class (the highest finite score, ties to the lower class id), if its score passes. Candidates are
ordered by box row, then class id."""


def _check(op_name: str, boxes: np.ndarray, scores: np.ndarray) -> None:
    check_rows(op_name, boxes.shape[0], scores=scores)


def _candidates_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, classes)`` of the candidates, int64."""
    finite = np.isfinite(scores)
    ok = valid_boxes(boxes)
    thr = scores.dtype.type(threshold)
    if multi_label:
        with np.errstate(invalid="ignore"):
            rows, cls = np.nonzero(finite & (scores > thr) & ok[:, None])
    else:
        s = np.where(finite, scores, -np.inf)
        best = np.argmax(s, axis=1)
        rows = np.flatnonzero((s[np.arange(len(s)), best] > thr) & ok)
        cls = best[rows]
    return rows.astype(np.int64), cls.astype(np.int64)


@jit
def _count_pass(boxes: np.ndarray, scores: np.ndarray, thr: Any, inf: Any, multi_label: bool, per_row: np.ndarray) -> int:
    """Candidates per row into ``per_row``; their total. Branch-free inner loops (they vectorize)."""
    total = 0
    for i in range(scores.shape[0]):
        count = 0
        if np.isfinite(boxes[i, 0]) and np.isfinite(boxes[i, 1]) and np.isfinite(boxes[i, 2]) and np.isfinite(boxes[i, 3]):
            for k in range(scores.shape[1]):
                v = scores[i, k]
                count += (v > thr) & (v < inf)
            if not multi_label:
                count = min(count, 1)  # the best finite score passes iff some finite score does
        per_row[i] = count
        total += count
    return total


@jit
def _fill_pass(scores: np.ndarray, thr: Any, inf: Any, multi_label: bool, per_row: np.ndarray, rows: np.ndarray, cls: np.ndarray) -> None:
    at = 0
    for i in range(scores.shape[0]):
        if per_row[i] == 0:
            continue
        if multi_label:
            for k in range(scores.shape[1]):
                v = scores[i, k]
                if v > thr and v < inf:
                    rows[at], cls[at] = i, k
                    at += 1
        else:
            best, arg = -inf, -1
            for k in range(scores.shape[1]):
                v = scores[i, k]
                if v > best and v < inf:  # strictly greater: the lowest class id of equal scores
                    best, arg = v, k
            rows[at], cls[at] = i, arg
            at += 1


def _candidates(boxes: np.ndarray, scores: np.ndarray, threshold: float, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    t = scores.dtype.type
    per_row = np.empty(scores.shape[0], np.int64)
    n = _count_pass(boxes, scores, t(threshold), t(np.inf), multi_label, per_row)
    rows, cls = np.empty(n, np.int64), np.empty(n, np.int64)
    _fill_pass(scores, t(threshold), t(np.inf), multi_label, per_row, rows, cls)
    return rows, cls


def _threshold_outputs(boxes: np.ndarray, scores: np.ndarray, rows: np.ndarray, cls: np.ndarray) -> tuple[np.ndarray, ...]:
    return boxes[rows], scores[rows, cls], cls, rows


def _threshold_reference(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, multi_label: bool) -> tuple[np.ndarray, ...]:
    _check("detect.score_threshold", boxes, scores)
    return _threshold_outputs(boxes, scores, *_candidates_reference(boxes, scores, score_threshold, multi_label))


def _example_inputs(rng: np.random.Generator, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    boxes, _, _ = example_nms_case(rng, dtype)
    c = int(rng.choice([1, 2, 5, 80]))
    scores = rng.random((len(boxes), c)).astype(dtype)
    if rng.random() < 0.5:
        scores *= rng.random((len(boxes), 1)).astype(dtype)  # objectness × class probability
    bad = rng.random(scores.shape)
    scores[bad < 0.02] = np.nan
    scores[(bad >= 0.02) & (bad < 0.03)] = np.inf
    scores[(bad >= 0.03) & (bad < 0.04)] = -np.inf
    return boxes, scores


def _example_params(rng: np.random.Generator, boxes: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    return {"score_threshold": float(rng.choice([-1.0, 0.0, 0.05, 0.25, 0.5, 0.9])), "multi_label": bool(rng.random() < 0.5)}


_THRESHOLD_PARAMS = [
    Param("score_threshold", Float(), 0.25, "keep (box, class) pairs whose score is greater than this"),
    Param("multi_label", Bool(), True, "every class over the threshold is a candidate (else each box's best class only)"),
]

score_threshold = Op(
    "detect.score_threshold",
    doc=f"""Turn per-class scores into candidate detections: the (box, class) pairs worth an NMS.

{_THRESHOLD_DOC}

Outputs, one row per candidate: ``boxes`` (the box's row of ``boxes``), ``scores``, ``classes``
(int64 class id = column of ``scores``) and ``indices`` (int64 row of ``boxes``); they feed
``detect.nms``. The count varies (0 included), so a batch gives lists; ``detect.multiclass_nms``
does threshold and NMS in one op with fixed-shape outputs.""",
    inputs=_INPUTS,
    outputs=[
        boxes_spec(dtypes=None, shape="K 4", doc="the candidates' boxes"),
        TensorSpec("scores", None, "K", "the candidates' scores"),
        TensorSpec("classes", (np.int64,), "K", "the candidates' class ids"),
        TensorSpec("indices", (np.int64,), "K", "the candidates' rows in boxes"),
    ],
    params=_THRESHOLD_PARAMS,
    reference=_threshold_reference,
    example_inputs=_example_inputs,
    example_params=_example_params,
)


@score_threshold.kernel("cpu")
def _threshold_cpu(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, multi_label: bool) -> tuple[np.ndarray, ...]:
    _check("detect.score_threshold", boxes, scores)
    return _threshold_outputs(boxes, scores, *_candidates(boxes, scores, score_threshold, multi_label))


# -- threshold + NMS + top-k, padded -------------------------------------------------------------


def _pad(boxes: np.ndarray, scores: np.ndarray, rows: np.ndarray, cls: np.ndarray, keep: np.ndarray, out: tuple[np.ndarray, ...]) -> None:
    ob, os_, oc, oi, on = out
    k = len(keep)
    r, c = rows[keep], cls[keep]
    ob[:k], os_[:k], oc[:k], oi[:k] = boxes[r], scores[r, c], c, r
    ob[k:], os_[k:], oc[k:], oi[k:] = 0, 0, -1, -1
    on[0] = k


def _mc_infer(boxes: np.ndarray, scores: np.ndarray, *, max_detections: int, **_: Any) -> ShapeDtypes:
    m, i64 = max_detections, np.dtype(np.int64)
    return [((m, 4), boxes.dtype), ((m,), scores.dtype), ((m,), i64), ((m,), i64), ((1,), i64)]


def _nms_classes(cls: np.ndarray, class_agnostic: bool) -> np.ndarray:
    return np.zeros_like(cls) if class_agnostic else cls


def _mc_reference(boxes: np.ndarray, scores: np.ndarray, *, score_threshold: float, iou_threshold: float, max_detections: int, multi_label: bool, class_agnostic: bool) -> tuple[np.ndarray, ...]:
    _check("detect.multiclass_nms", boxes, scores)
    rows, cls = _candidates_reference(boxes, scores, score_threshold, multi_label)
    keep = np.empty(0, np.int64)
    if len(rows):
        _, b, s, c = prepare(boxes[rows], scores[rows, cls], _nms_classes(cls, class_agnostic))
        keep = _greedy_reference(b, s, c, iou_threshold, max_detections)
    out = tuple(np.empty(shape, dt) for shape, dt in _mc_infer(boxes, scores, max_detections=max_detections))
    _pad(boxes, scores, rows, cls, keep, out)
    return out


def _mc_example_params(rng: np.random.Generator, boxes: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    return {
        **_example_params(rng, boxes, scores),
        "iou_threshold": float(rng.uniform(0, 1)),
        "max_detections": int(rng.choice([1, 5, 100, 300])),
        "class_agnostic": bool(rng.random() < 0.3),
    }


multiclass_nms = Op(
    "detect.multiclass_nms",
    doc=f"""Score threshold, per-class NMS and the top ``max_detections``, with fixed-shape outputs (what a server returns).

{_THRESHOLD_DOC}

The candidates then go through ``detect.nms`` (torchvision's ``batched_nms``, exactly, grouped by
class id; with ``class_agnostic``, all in one group: ``torchvision.ops.nms``) and the first
``max_detections`` kept, highest score first (ties: the earlier candidate). No cap on the number
of candidates before NMS.

Outputs, padded to ``max_detections`` rows: ``boxes`` [M, 4], ``scores`` [M], ``classes`` [M]
(int64), ``indices`` [M] (int64 row of the input ``boxes``, for per-box extras such as masks) and
``num_detections`` (int64, shape [1]; a batch gives [B, 1]): rows ``num_detections`` and after are
padding: boxes and scores 0, classes and indices -1. No candidate at all gives 0 and all padding.""",
    inputs=_INPUTS,
    outputs=[
        boxes_spec(dtypes=None, shape="M 4", doc="kept boxes, then padding"),
        TensorSpec("scores", None, "M", "kept scores, highest first, then 0"),
        TensorSpec("classes", (np.int64,), "M", "kept class ids, then -1"),
        TensorSpec("indices", (np.int64,), "M", "kept boxes' rows in the input, then -1"),
        TensorSpec("num_detections", (np.int64,), "1", "[how many rows are detections]"),
    ],
    params=[
        *_THRESHOLD_PARAMS,
        Param("iou_threshold", Float(0.0, 1.0), 0.45, "suppress a box whose IoU with a kept box of its class is greater than this"),
        Param("max_detections", Int(min=1), 100, "rows of the outputs: the most detections returned"),
        Param("class_agnostic", Bool(), False, "suppress across classes too"),
    ],
    reference=_mc_reference,
    infer=_mc_infer,
    example_inputs=_example_inputs,
    example_params=_mc_example_params,
)


@multiclass_nms.kernel("cpu")
def _mc_cpu(boxes: np.ndarray, scores: np.ndarray, *, out: tuple[np.ndarray, ...], score_threshold: float, iou_threshold: float, max_detections: int, multi_label: bool, class_agnostic: bool) -> None:
    _check("detect.multiclass_nms", boxes, scores)
    rows, cls = _candidates(boxes, scores, score_threshold, multi_label)
    keep = np.empty(0, np.int64)
    if len(rows):
        _, b, s, c = prepare(boxes[rows], scores[rows, cls], _nms_classes(cls, class_agnostic))
        keep = _greedy(b, score_order(s), c, float(iou_threshold), max_detections, b.dtype.type(0), b.dtype.type(1))
    _pad(boxes, scores, rows, cls, keep, out)
