"""Decoding detector heads: anchors + deltas (torchvision's BoxCoder), and YOLO-style outputs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Bool, Choice, Float, Floats, Optional, Param
from .._spec import TensorSpec
from ..image._common import jit
from ._boxes import convert_boxes
from ._common import BOX_DTYPES, FORMATS, ShapeDtypes, boxes_spec, random_boxes
from ._nms import check_rows

__all__ = ["decode_anchors", "decode_yolo"]

_TOLERANCE = {"float32": (1e-6, 1e-6), "float64": (1e-12, 1e-14)}  # exp / sigmoid: a few last-bit differences
_DEFAULT_CLIP = math.log(1000.0 / 16)

# -- anchors + deltas ----------------------------------------------------------------------------


def _anchor_reference(deltas: np.ndarray, anchors: np.ndarray, *, weights: tuple[float, ...], clip: float | None) -> np.ndarray:
    check_rows("detect.decode_anchors", deltas.shape[0], anchors=anchors)
    t = deltas.dtype.type
    a = anchors.astype(deltas.dtype, copy=False)
    widths, heights = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    ctr_x, ctr_y = a[:, 0] + t(0.5) * widths, a[:, 1] + t(0.5) * heights
    dx, dy, dw, dh = (deltas[:, k] / t(weights[k]) for k in range(4))
    if clip is not None:
        dw, dh = np.minimum(dw, t(clip)), np.minimum(dh, t(clip))  # NaN stays NaN, as torch.clamp
    px, py = dx * widths + ctr_x, dy * heights + ctr_y
    hw, hh = t(0.5) * (np.exp(dw) * widths), t(0.5) * (np.exp(dh) * heights)
    return np.stack([px - hw, py - hh, px + hw, py + hh], 1)


@jit
def _anchor_loop(d: np.ndarray, a: np.ndarray, out: np.ndarray, w: np.ndarray, clip: Any, use_clip: bool, half: Any) -> None:
    for i in range(d.shape[0]):
        width, height = a[i, 2] - a[i, 0], a[i, 3] - a[i, 1]
        cx, cy = a[i, 0] + half * width, a[i, 1] + half * height
        dx, dy, dw, dh = d[i, 0] / w[0], d[i, 1] / w[1], d[i, 2] / w[2], d[i, 3] / w[3]
        if use_clip:
            dw = clip if dw > clip else dw
            dh = clip if dh > clip else dh
        px, py = dx * width + cx, dy * height + cy
        hw, hh = half * (np.exp(dw) * width), half * (np.exp(dh) * height)
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = px - hw, py - hh, px + hw, py + hh


def _anchor_examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(1, 300))
    deltas = (rng.standard_normal((n, 4)) * rng.choice([0.1, 1.0, 5.0])).astype(dtype)
    deltas[rng.random((n, 4)) < 0.02] = np.nan
    return deltas, random_boxes(rng, n, BOX_DTYPES[int(rng.integers(2))])


def _anchor_params(rng: np.random.Generator, *_: Any) -> dict[str, Any]:
    weights = [[1.0, 1.0, 1.0, 1.0], [10.0, 10.0, 5.0, 5.0], [float(v) for v in rng.uniform(0.5, 20, 4)]][int(rng.integers(3))]
    return {"weights": weights, "clip": None if rng.random() < 0.3 else float(rng.choice([_DEFAULT_CLIP, 1.0, 0.0]))}


decode_anchors = Op(
    "detect.decode_anchors",
    doc="""Decode box regression deltas against anchors, exactly as torchvision's
``BoxCoder(weights, bbox_xform_clip).decode_single`` (Faster R-CNN, RetinaNet, SSD, FCOS-style heads).

Per row, with the anchor ``(x1, y1, x2, y2)`` (cast to the deltas' dtype) and ``(dx, dy, dw, dh)``:
``w = x2 - x1``, ``cx = x1 + 0.5 * w`` (same for y); ``dx /= weights[0]`` … ``dh /= weights[3]``;
``dw`` and ``dh`` clamped above at ``clip`` (default ``log(1000 / 16)``, torchvision's; null: no
clamp); ``pcx = dx * w + cx``, ``pw = exp(dw) * w``; output ``xyxy`` boxes ``pcx ∓ 0.5 * pw``,
``pcy ∓ 0.5 * ph``, in the deltas' dtype. SSD-style variances ``v`` are ``weights = 1 / v`` (SSD's
0.1, 0.2 are weights 10, 10, 5, 5). One anchor per row: repeat anchors to match a head with several
deltas per anchor. NaN deltas or anchors give NaN boxes (dropped later by the NMS ops); a
zero-size anchor gives a zero-size box.""",
    inputs=[
        boxes_spec("deltas", doc="(dx, dy, dw, dh) per anchor"),
        boxes_spec("anchors", doc="xyxy anchors, one per row of deltas"),
    ],
    outputs=[boxes_spec(dtypes=None, doc="decoded xyxy boxes")],
    params=[
        Param("weights", Floats(4, 4, positive=True), (1.0, 1.0, 1.0, 1.0), "(wx, wy, ww, wh): deltas are divided by these"),
        Param("clip", Optional(Float()), _DEFAULT_CLIP, "upper clamp of dw and dh before exp; null: none"),
    ],
    reference=_anchor_reference,
    infer=lambda deltas, anchors, **_: [(deltas.shape, deltas.dtype)],
    tolerance=_TOLERANCE,
    example_inputs=_anchor_examples,
    example_params=_anchor_params,
)


@decode_anchors.kernel("cpu")
def _anchor_cpu(deltas: np.ndarray, anchors: np.ndarray, *, out: np.ndarray, weights: tuple[float, ...], clip: float | None) -> None:
    check_rows("detect.decode_anchors", deltas.shape[0], anchors=anchors)
    t = deltas.dtype.type
    a = anchors.astype(deltas.dtype, copy=False)
    _anchor_loop(deltas, a, out, np.array(weights, deltas.dtype), t(0 if clip is None else clip), clip is not None, t(0.5))


# -- YOLO: flat [boxes, 4 (+1) + classes] --------------------------------------------------------


def _yolo_layout(prediction: np.ndarray, *, objectness: bool, transposed: bool, **_: Any) -> tuple[int, int]:
    """``(boxes, classes)`` of a prediction, or an ``InputError``."""
    n, d = prediction.shape[::-1] if transposed else prediction.shape
    first = 5 if objectness else 4
    if d <= first:
        layout = "[4 + classes, boxes]" if transposed else ("[boxes, 5 + classes]" if objectness else "[boxes, 4 + classes]")
        raise InputError(f"detect.decode_yolo: prediction must be {layout} with at least one class, got shape {list(prediction.shape)}")
    return n, d - first


def _yolo_infer(prediction: np.ndarray, **params: Any) -> ShapeDtypes:
    n, c = _yolo_layout(prediction, **params)
    return [((n, 4), prediction.dtype), ((n, c), prediction.dtype)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        return one / (one + np.exp(-x))


def _yolo_reference(prediction: np.ndarray, *, objectness: bool, transposed: bool, box_format: str, sigmoid: bool) -> tuple[np.ndarray, np.ndarray]:
    _yolo_layout(prediction, objectness=objectness, transposed=transposed)
    p = prediction.T if transposed else prediction
    first = 5 if objectness else 4
    cls = p[:, first:]
    if sigmoid:
        cls = _sigmoid(cls)
    if objectness:
        obj = p[:, 4:5]
        cls = cls * (_sigmoid(obj) if sigmoid else obj)
    boxes = convert_boxes.reference(np.ascontiguousarray(p[:, :4]), in_fmt=box_format, out_fmt="xyxy")
    return boxes, np.ascontiguousarray(cls)


@jit
def _yolo_loop(p: np.ndarray, boxes: np.ndarray, scores: np.ndarray, first: int, fmt: int, sigmoid: bool, transposed: bool, half: Any, one: Any) -> None:
    n, c = scores.shape
    for i in range(n):
        if transposed:
            a0, a1, a2, a3 = p[0, i], p[1, i], p[2, i], p[3, i]
        else:
            a0, a1, a2, a3 = p[i, 0], p[i, 1], p[i, 2], p[i, 3]
        if fmt == 0:
            boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3] = a0, a1, a2, a3
        elif fmt == 1:
            boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3] = a0, a1, a0 + a2, a1 + a3
        else:
            boxes[i, 0], boxes[i, 1] = a0 - half * a2, a1 - half * a3
            boxes[i, 2], boxes[i, 3] = a0 + half * a2, a1 + half * a3
        obj = one
        if first == 5:
            obj = p[4, i] if transposed else p[i, 4]
            if sigmoid:
                obj = one / (one + np.exp(-obj))
        for k in range(c):
            v = p[first + k, i] if transposed else p[i, first + k]
            if sigmoid:
                v = one / (one + np.exp(-v))
            scores[i, k] = v * obj if first == 5 else v


def _yolo_examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    n, c = int(rng.integers(1, 200)), int(rng.choice([1, 3, 80]))
    boxes = random_boxes(rng, n, np.float64, fmt="cxcywh")
    conf = rng.standard_normal((n, 1 + c)) * 4 if rng.random() < 0.5 else rng.random((n, 1 + c))
    pred = np.concatenate([boxes, conf], 1).astype(dtype)
    pred[rng.random(pred.shape) < 0.01] = np.nan
    return (pred,)


def _yolo_params(rng: np.random.Generator, prediction: np.ndarray) -> dict[str, Any]:
    objectness = bool(rng.random() < 0.7)
    # read as [4 (+1) + classes, boxes] where that shape allows it (the values are arbitrary anyway)
    transposed = bool(rng.random() < 0.3 and prediction.shape[0] > (5 if objectness else 4))
    return {"objectness": objectness, "transposed": transposed, "box_format": str(rng.choice(FORMATS)), "sigmoid": bool(rng.random() < 0.5)}


decode_yolo = Op(
    "detect.decode_yolo",
    doc="""Split a YOLO-style flat prediction into ``xyxy`` boxes and per-class scores.

Accepted layout: ``prediction`` is ``[boxes, 5 + classes]`` per image, each row ``(cx, cy, w, h,
objectness, class_1 … class_C)`` with the box in the network input's pixels: the output of an
exported YOLOv5 / YOLOv7 / YOLOX model ([N, 25200, 85] for a 640 COCO model; its Detect layer has
already turned grid offsets into pixels, see ``detect.decode_grid``). ``objectness=false`` is the
YOLOv8-style row ``(cx, cy, w, h, class_1 … class_C)``; ``transposed=true`` takes the prediction as
``[4 (+1) + classes, boxes]`` (YOLOv8's [N, 84, 8400]). ``box_format`` names the box columns
(default ``cxcywh``; converted as ``detect.convert_boxes``).

``scores[i, c] = class_c × objectness`` (YOLOv5's ``conf = obj_conf * cls_conf``), or ``class_c``
without objectness; with ``sigmoid=true`` the objectness and class columns are logits and go
through ``1 / (1 + exp(-x))`` first (exported models usually apply it already). Outputs ``boxes``
[boxes, 4] and ``scores`` [boxes, classes] in the prediction's dtype. NaN propagates (the NMS ops
drop it). A prediction without a class column is an ``InputError``.""",
    inputs=[TensorSpec("prediction", BOX_DTYPES, "N D", "[boxes, 5 + classes] (or transposed)")],
    outputs=[boxes_spec(dtypes=None, doc="xyxy boxes"), TensorSpec("scores", None, "N C", "score per box and class")],
    params=[
        Param("objectness", Bool(), True, "column 4 is objectness (YOLOv5/v7/X); false: classes start at column 4 (YOLOv8)"),
        Param("transposed", Bool(), False, "the prediction is [4 (+1) + classes, boxes] (YOLOv8's export)"),
        Param("box_format", Choice(FORMATS), "cxcywh", "the format of the 4 box columns"),
        Param("sigmoid", Bool(), False, "apply the sigmoid to objectness and class columns (they are logits)"),
    ],
    reference=_yolo_reference,
    infer=_yolo_infer,
    tolerance=_TOLERANCE,
    example_inputs=_yolo_examples,
    example_params=_yolo_params,
)


@decode_yolo.kernel("cpu")
def _yolo_cpu(prediction: np.ndarray, *, out: tuple[np.ndarray, np.ndarray], objectness: bool, transposed: bool, box_format: str, sigmoid: bool) -> None:
    _yolo_layout(prediction, objectness=objectness, transposed=transposed)
    t = prediction.dtype.type
    _yolo_loop(prediction, out[0], out[1], 5 if objectness else 4, FORMATS.index(box_format), sigmoid, transposed, t(0.5), t(1))

