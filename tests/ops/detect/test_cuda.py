"""The detection ops' CUDA kernels against their NumPy references — on the GPU when there is one,
else in Numba's CUDA simulator (tests/conftest.py), on small random inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from numba import cuda

from twinpipe.ops import InputError, Op, detect
from twinpipe.ops.detect._nms import example_nms_case
from twinpipe.ops.testing import check_op

pytestmark = pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device and no simulator")


def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


@pytest.mark.parametrize("op", [detect.decode_anchors, detect.decode_yolo, detect.decode_grid], ids=lambda op: op.name)
def test_the_cuda_decoders_match_the_reference_for_every_dtype(op: Op) -> None:
    report = check_op(op, devices=("cuda",), cases=1)
    assert all(report.cases.get(f"cuda/{d.name}") == 1 for d in op.inputs[0].dtypes), report


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms_on_the_gpu_keeps_the_rows_the_reference_keeps_in_its_order(dtype: type) -> None:
    """Overlapping clusters, NaN/inf scores and coordinates, several classes, thresholds at the
    edges (0: any overlap suppresses; 1: nothing does) and a detection limit."""
    rng = _rng()
    for threshold, limit in ((0.0, None), (1.0, 5), (float(rng.uniform(0.2, 0.8)), None)):
        boxes, scores, classes = example_nms_case(rng, dtype, n=int(rng.integers(20, 60)))
        want = detect.nms.reference(boxes, scores, classes, iou_threshold=threshold, max_detections=limit)
        got = detect.nms(cuda.to_device(boxes), cuda.to_device(scores), cuda.to_device(classes), iou_threshold=threshold,
                         max_detections=limit)
        assert type(got) is type(cuda.to_device(scores)) and got.dtype == np.int64  # the caller's kind of GPU array
        np.testing.assert_array_equal(got.copy_to_host(), want, err_msg=f"threshold {threshold}")


def test_nms_on_the_gpu_with_no_valid_box_keeps_none() -> None:
    boxes = np.array([[0, 0, 4, 4], [1, 1, np.nan, 3]], np.float32)
    got = detect.nms(cuda.to_device(boxes), cuda.to_device(np.array([np.nan, 0.5], np.float32)), cuda.to_device(np.zeros(2, np.int64)))
    assert got.shape == (0,)
    with pytest.raises(InputError, match=r"detect.nms: ragged inputs disagree on the batch: \[2, 1, 2\] items"):
        detect.nms([cuda.to_device(boxes)] * 2, [cuda.to_device(np.ones(2, np.float32))], [cuda.to_device(np.zeros(2, np.int64))] * 2)
    with pytest.raises(InputError, match=r"detect.decode_anchors: GPU inputs disagree on the batch: shapes \[\[2, 3, 4\], \[3, 3, 4\]\]"):
        detect.decode_anchors(cuda.to_device(np.ones((2, 3, 4), np.float32)), cuda.to_device(np.ones((3, 3, 4), np.float32)))
    with pytest.raises(InputError, match="input 'scores' has 3 rows; 'boxes' has 2"):
        detect.nms(cuda.to_device(boxes), cuda.to_device(np.ones(3, np.float32)), cuda.to_device(np.zeros(2, np.int64)))
