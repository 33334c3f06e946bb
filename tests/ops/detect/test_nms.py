"""detect.nms: the kit, and exactly torchvision.ops.batched_nms's kept rows and order."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.detect import _nms as nms_module
from twinpipe.ops.detect import nms, nms_indices
from twinpipe.ops.testing import check_op


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _torchvision(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    return batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), iou).numpy()


def _case(rng: np.random.Generator, n: int, classes: int, dtype: type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes in [0, extent] (torchvision's documented domain), heavily overlapping half the time,
    with distinct scores."""
    extent = float(rng.choice([1.0, 100.0, 640.0, 5000.0]))
    if rng.random() < 0.5:  # clusters of jittered copies of a few boxes
        k = max(1, n // int(rng.choice([2, 8, 30])))
        centre, wh = rng.uniform(0, extent, (k, 2)), rng.uniform(0.01, extent / 3, (k, 2))
        pick = rng.integers(0, k, n)
        jitter = rng.normal(0, 1, (n, 4)) * np.tile(wh[pick], 2) * rng.uniform(0.01, 0.3)
        boxes = np.concatenate([centre[pick] - wh[pick] / 2, centre[pick] + wh[pick] / 2], 1) + jitter
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
        boxes = np.clip(boxes, 0, None)
    else:
        xy, wh = rng.uniform(0, extent, (n, 2)), rng.uniform(0, extent / 2, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
    scores: np.ndarray = ((rng.permutation(n) + rng.uniform(0, 0.5)) / max(n, 1)).astype(dtype)
    assert len(np.unique(scores)) == n
    return boxes.astype(dtype), scores, rng.integers(0, classes, n).astype([np.int32, np.int64][int(rng.integers(2))])


def test_kit() -> None:
    check_op(nms, cases=20)


@pytest.mark.parametrize("classes", [1, 3, 80, 1000])
def test_keeps_exactly_what_torchvision_batched_nms_keeps(classes: int) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 2, 3, 10, 999, 1000, 1001, 2000, *(int(v) for v in rng.integers(0, 2001, 30))]
    for n in sizes:
        dtype = np.float32 if rng.random() < 0.75 else np.float64
        boxes, scores, cls = _case(rng, n, classes, dtype)
        iou = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0])) if rng.random() < 0.3 else float(rng.uniform(0, 1))
        got = nms_indices(boxes, scores, cls, iou)
        want = _torchvision(boxes, scores, cls, iou)
        msg = f"seed={seed} n={n} classes={classes} dtype={dtype.__name__} iou={iou}"
        np.testing.assert_array_equal(got, want, err_msg=msg)
        if n:
            np.testing.assert_array_equal(nms(boxes, scores, cls, iou_threshold=iou), want, err_msg=msg)


def test_small_inputs_round_iou_as_torchvision_does() -> None:
    """Up to 1000 boxes torchvision shifts boxes by class × (max + 1) before its IoU; near-threshold
    IoUs then round differently from plain coordinates. Such cases agree too."""
    seed = _seed()
    rng = np.random.default_rng(seed)
    differs = 0
    for _ in range(300):
        n = 200
        xy, wh = rng.uniform(0, 50, (n, 2)), rng.uniform(5, 20, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        boxes[0] = [0, 0, 1000, 1000]  # a large max coordinate: offsets of ~400 000
        scores = rng.permutation(n).astype(np.float32)
        cls = rng.integers(400, 403, n)
        want = _torchvision(boxes, scores, cls, 0.5)
        np.testing.assert_array_equal(nms_indices(boxes, scores, cls, 0.5), want, err_msg=f"seed={seed}")
        # the same boxes past the small-input path (plain coordinates) would differ sometimes
        plain = nms_module._greedy_reference(boxes, scores, cls.astype(np.int64), 0.5, -1)
        differs += not np.array_equal(plain, want)
    assert differs > 5, "the rounding cases were not exercised"


def test_max_detections_is_a_prefix() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    boxes, scores, cls = _case(rng, 1500, 5, np.float32)
    full = _torchvision(boxes, scores, cls, 0.5)
    for k in (1, 7, len(full), len(full) + 10):
        np.testing.assert_array_equal(nms(boxes, scores, cls, iou_threshold=0.5, max_detections=k), full[:k], err_msg=f"seed={seed}")


def test_non_finite_scores_and_boxes_are_dropped() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for n in (50, 1500):
        boxes, scores, cls = _case(rng, n, 4, np.float32)
        bad = rng.random(n)
        scores[bad < 0.1] = np.nan
        scores[(bad >= 0.1) & (bad < 0.15)] = np.inf
        scores[(bad >= 0.15) & (bad < 0.2)] = -np.inf
        boxes[(bad >= 0.2) & (bad < 0.25), 2] = np.nan
        boxes[(bad >= 0.25) & (bad < 0.3), 0] = -np.inf
        rows = np.flatnonzero(bad >= 0.3)
        # the result is torchvision's on the remaining rows
        want = rows[_torchvision(boxes[rows], scores[rows], cls[rows], 0.5)]
        np.testing.assert_array_equal(nms(boxes, scores, cls, iou_threshold=0.5), want, err_msg=f"seed={seed}")
    nan = np.full(3, np.nan, np.float32)
    assert nms(np.ones((3, 4), np.float32), nan, np.zeros(3, np.int64)).tolist() == []


def test_zero_area_and_inverted_boxes_have_iou_zero() -> None:
    boxes = np.array(
        [
            [10, 10, 10, 50],  # zero width
            [10, 10, 10, 50],  # the same zero-width box
            [0, 0, 100, 100],
            [0, 0, 100, 100],  # a duplicate: suppressed
            [60, 60, 20, 20],  # inverted (x2 < x1, y2 < y1) inside the big box
            [5, 5, 5, 5],  # a point
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], np.float32)
    cls = np.zeros(6, np.int64)
    got = nms(boxes, scores, cls, iou_threshold=0.0)
    assert got.tolist() == [0, 1, 2, 4, 5]
    np.testing.assert_array_equal(got, _torchvision(boxes, scores, cls, 0.0))


def test_ties_go_to_the_lower_row_and_classes_never_suppress_each_other() -> None:
    boxes = np.array([[0, 0, 10, 10]] * 4, np.float64)
    scores = np.array([0.5, 0.5, 0.9, 0.5])
    assert nms(boxes, scores, np.array([0, 0, 1, 1])).tolist() == [2, 0]
    assert nms(boxes, scores, np.array([0, 1, 2, 3])).tolist() == [2, 0, 1, 3]
    # far-apart class ids, negative ones included
    assert nms(boxes, scores, np.array([-7, 10**12, -7, 3])).tolist() == [2, 1, 3]


def test_empty_and_mismatched_inputs() -> None:
    empty = nms_indices(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    with pytest.raises(InputError, match=r"detect.nms: input 'boxes' is empty"):
        nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    with pytest.raises(InputError, match=r"detect.nms: input 'scores' has 2 rows; 'boxes' has 3"):
        nms(np.ones((3, 4), np.float32), np.ones(2, np.float32), np.zeros(3, np.int64))
    with pytest.raises(InputError, match=r"detect.nms: input 'classes' has dtype float32"):
        nms(np.ones((3, 4), np.float32), np.ones(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ParamError, match=r"detect.nms: parameter 'iou_threshold'"):
        nms(np.ones((3, 4), np.float32), np.ones(3, np.float32), np.zeros(3, np.int64), iou_threshold=1.5)


def test_torch_tensors_and_batches() -> None:
    rng = np.random.default_rng(_seed())
    boxes, scores, cls = _case(rng, 300, 3, np.float32)
    want = _torchvision(boxes, scores, cls, 0.5)
    got = nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(cls))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), want)
    # A second image that keeps a different number of boxes by construction: k disjoint boxes,
    # the remaining rows exact copies of the first one (suppressed: IoU 1, same class, lower score).
    k = len(want) + 1 if len(want) < len(boxes) else len(want) - 1
    other = np.repeat(np.array([[0, 0, 5, 5]], np.float32), len(boxes), 0)
    other[:k] += np.arange(k, dtype=np.float32)[:, None] * 10
    other_scores = np.linspace(1, 0.1, len(boxes), dtype=np.float32)
    other_cls = np.zeros(len(boxes), cls.dtype)
    batch = nms(np.stack([boxes, other]), np.stack([scores, other_scores]), np.stack([cls, other_cls]))
    assert isinstance(batch, list) and len(batch) == 2  # a count per image: a list
    np.testing.assert_array_equal(batch[0], want)
    np.testing.assert_array_equal(batch[1], _torchvision(other, other_scores, other_cls, 0.5))
    assert len(batch[1]) == k
    same = nms(np.stack([boxes, boxes]), np.stack([scores, scores]), np.stack([cls, cls]))
    assert isinstance(same, np.ndarray) and same.shape == (2, len(want))  # equal counts stack densely
    np.testing.assert_array_equal(same[1], want)
