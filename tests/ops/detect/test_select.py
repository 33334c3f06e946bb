"""detect.score_threshold and detect.multiclass_nms: the kit, torchvision's RetinaNet post-processing,
YOLOv5's best-class selection, padding and bad scores."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.ops import batched_nms
from torchvision.ops import nms as tv_nms

from twinpipe.ops import InputError
from twinpipe.ops.detect import clip_boxes, decode_anchors, multiclass_nms, score_threshold
from twinpipe.ops.detect._common import random_boxes
from twinpipe.ops.testing import check_op


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _distinct_scores(rng: np.random.Generator, n: int, c: int, dtype: type = np.float32) -> np.ndarray:
    """Scores in [0, 1), all different (in float32 too: at least 1 / (n c) apart)."""
    return ((rng.permutation(n * c) + rng.uniform(0, 0.5)) / (n * c)).reshape(n, c).astype(dtype)


def test_kit_score_threshold() -> None:
    check_op(score_threshold, cases=20)


def test_kit_multiclass_nms() -> None:
    check_op(multiclass_nms, cases=20)


def test_candidates_are_torchs_flattened_scores_over_the_threshold() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(10):
        n, c = int(rng.integers(1, 500)), int(rng.choice([1, 4, 80]))
        boxes, scores = random_boxes(rng, n, np.float32), _distinct_scores(rng, n, c)
        thr = float(rng.uniform(0, 0.5))
        out = score_threshold(boxes, scores, score_threshold=thr)
        flat = torch.where(torch.from_numpy(scores).flatten() > thr)[0]  # RetinaNet's selection, row-major
        np.testing.assert_array_equal(out.indices, (flat // c).numpy(), err_msg=f"seed={seed}")
        np.testing.assert_array_equal(out.classes, (flat % c).numpy(), err_msg=f"seed={seed}")
        np.testing.assert_array_equal(out.scores, torch.from_numpy(scores).flatten()[flat].numpy())
        np.testing.assert_array_equal(out.boxes, boxes[out.indices])


def test_decode_clip_and_multiclass_nms_are_torchvision_retinanet_postprocessing() -> None:
    """torchvision's own RetinaNet.postprocess_detections (one level, no top-k cap) on random head
    outputs gives the boxes, scores and labels of decode_anchors → clip_boxes → multiclass_nms."""
    seed = _seed()
    rng = np.random.default_rng(seed)
    compared = 0
    for _ in range(6):
        n, c = int(rng.integers(1, 1500)), int(rng.choice([1, 5, 20]))
        h, w = (int(v) for v in rng.integers(64, 800, 2))
        anchors = random_boxes(rng, n, np.float64, extent=float(max(h, w)), degenerate=False)
        deltas = rng.normal(0, 0.5, (n, 4))
        logits = torch.from_numpy(rng.normal(-1, 2, (n, c)))
        probs = torch.sigmoid(logits).numpy()
        if len(np.unique(probs)) != probs.size:
            continue
        coder = SimpleNamespace(score_thresh=0.05, topk_candidates=n * c, nms_thresh=0.5, detections_per_img=100,
                                box_coder=BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)))
        heads = {"cls_logits": [logits[None]], "bbox_regression": [torch.from_numpy(deltas)[None]]}
        want = RetinaNet.postprocess_detections(coder, heads, [[torch.from_numpy(anchors)]], [(h, w)])[0]
        boxes = clip_boxes(decode_anchors(deltas, anchors), np.array([h, w]))
        got = multiclass_nms(boxes, probs, score_threshold=0.05, iou_threshold=0.5, max_detections=100)
        k = int(got.num_detections[0])
        msg = f"seed={seed} n={n} c={c}"
        assert k == len(want["labels"]), msg
        np.testing.assert_array_equal(got.classes[:k], want["labels"].numpy(), err_msg=msg)
        np.testing.assert_array_equal(got.scores[:k], want["scores"].numpy(), err_msg=msg)
        np.testing.assert_allclose(got.boxes[:k], want["boxes"].numpy(), rtol=1e-12, atol=1e-9, err_msg=msg)
        compared += k
    assert compared > 50, f"seed={seed}: too few detections compared"


@pytest.mark.parametrize("agnostic", [False, True])
def test_best_class_selection_is_yolov5s(agnostic: bool) -> None:
    """multi_label=False: YOLOv5's ``conf, j = x[:, 5:].max(1)``; ``conf > thres``; then NMS and [:max_det]."""
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(10):
        n, c = int(rng.integers(1, 3000)), int(rng.choice([1, 3, 80]))
        boxes, scores = random_boxes(rng, n, np.float32), _distinct_scores(rng, n, c)
        thr, iou, m = float(rng.uniform(0, 0.5)), float(rng.uniform(0.2, 0.8)), int(rng.choice([1, 30, 300]))
        conf, j = torch.from_numpy(scores).max(1)
        sel = torch.where(conf > thr)[0]
        tb, ts, tc = torch.from_numpy(boxes)[sel], conf[sel], j[sel]
        keep = (tv_nms(tb, ts, iou) if agnostic else batched_nms(tb, ts, tc, iou))[:m]
        got = multiclass_nms(boxes, scores, score_threshold=thr, iou_threshold=iou, max_detections=m, multi_label=False, class_agnostic=agnostic)
        k = len(keep)
        msg = f"seed={seed}"
        assert got.num_detections.tolist() == [k], msg
        np.testing.assert_array_equal(got.indices[:k], sel[keep].numpy(), err_msg=msg)
        np.testing.assert_array_equal(got.classes[:k], tc[keep].numpy(), err_msg=msg)
        np.testing.assert_array_equal(got.boxes[:k], tb[keep].numpy(), err_msg=msg)


def test_padding_and_no_candidates() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.3]], np.float32)
    out = multiclass_nms(boxes, scores, score_threshold=0.25, iou_threshold=0.5, max_detections=5)
    assert out.num_detections.tolist() == [3]
    assert out.indices.tolist() == [0, 1, 2, -1, -1]
    assert out.classes.tolist() == [0, 1, 1, -1, -1]  # (1, class 0) is suppressed by (0, class 0)
    np.testing.assert_array_equal(out.scores, np.array([0.9, 0.7, 0.3, 0, 0], np.float32))
    assert out.boxes[3:].tolist() == [[0, 0, 0, 0]] * 2
    none = multiclass_nms(boxes, scores, score_threshold=0.95, max_detections=2)
    assert none.num_detections.tolist() == [0] and none.classes.tolist() == [-1, -1] and not none.boxes.any()


def test_non_finite_scores_and_boxes_are_never_detections() -> None:
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, np.nan, 50], [60, 60, 70, 70]], np.float32)
    scores = np.array([[np.nan, 0.6], [np.inf, -np.inf], [0.9, 0.9], [0.5, np.nan]], np.float32)
    for multi_label in (True, False):
        cand = score_threshold(boxes, scores, score_threshold=0.1, multi_label=multi_label)
        assert cand.indices.tolist() == [0, 3] and cand.classes.tolist() == [1, 0]
        out = multiclass_nms(boxes, scores, score_threshold=-1e9, multi_label=multi_label, max_detections=4)
        assert out.num_detections.tolist() == [2] and out.indices.tolist() == [0, 3, -1, -1]


def test_a_dense_batch_gives_fixed_shapes() -> None:
    rng = np.random.default_rng(_seed())
    boxes = np.stack([random_boxes(rng, 200, np.float32) for _ in range(3)])
    scores = np.stack([_distinct_scores(rng, 200, 4) for _ in range(3)])
    out = multiclass_nms(torch.from_numpy(boxes), torch.from_numpy(scores), max_detections=50)
    assert [tuple(t.shape) for t in out] == [(3, 50, 4), (3, 50), (3, 50), (3, 50), (3, 1)]
    for i in range(3):
        one = multiclass_nms(boxes[i], scores[i], max_detections=50)
        for a, b in zip(out, one):
            np.testing.assert_array_equal(a[i].numpy(), b)


def test_mismatched_rows_are_an_error() -> None:
    with pytest.raises(InputError, match=r"detect.multiclass_nms: input 'scores' has 2 rows; 'boxes' has 3"):
        multiclass_nms(np.ones((3, 4), np.float32), np.ones((2, 5), np.float32))
    with pytest.raises(InputError, match=r"detect.score_threshold: input 'scores' has 2 rows"):
        score_threshold(np.ones((3, 4), np.float32), np.ones((2, 5), np.float32))
