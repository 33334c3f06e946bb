"""detect.decode_anchors / decode_yolo / decode_grid: the kit, torchvision's BoxCoder, and the
YOLOv5 / YOLOv8 / YOLOX decoding formulas (transcribed from their sources into torch)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.detect import decode_anchors, decode_grid, decode_yolo
from twinpipe.ops.detect._common import random_boxes
from twinpipe.ops.testing import check_op


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


@pytest.mark.parametrize("op", [decode_anchors, decode_yolo, decode_grid], ids=lambda op: op.name)
def test_kit(op) -> None:  # type: ignore[no-untyped-def]
    check_op(op)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decode_anchors_is_torchvision_boxcoder(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for weights, clip in [((1.0, 1.0, 1.0, 1.0), math.log(1000.0 / 16)), ((10.0, 10.0, 5.0, 5.0), math.log(1000.0 / 16)),
                          ((2.0, 3.0, 0.5, 7.0), 1.0), ((1.0, 1.0, 1.0, 1.0), 1e9)]:
        n = int(rng.integers(1, 2000))
        deltas = (rng.standard_normal((n, 4)) * rng.choice([0.1, 1.0, 10.0])).astype(dtype)
        anchors = random_boxes(rng, n, [np.float32, np.float64][int(rng.integers(2))])
        got = decode_anchors(deltas, anchors, weights=weights, clip=clip)
        want = BoxCoder(weights, clip).decode_single(torch.from_numpy(deltas), torch.from_numpy(anchors)).numpy()
        assert got.dtype == want.dtype == dtype
        # exp differs between libraries in the last bit
        rtol = 4e-7 if dtype == np.float32 else 1e-15
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max(), err_msg=f"seed={seed} {weights} {clip}")


def test_decode_anchors_clamps_and_propagates_nan() -> None:
    anchors = np.array([[0, 0, 10, 20]] * 3, np.float32)
    deltas = np.array([[0, 0, 100, 100], [np.nan, 0, 0, 0], [0, 0, -100, 0]], np.float32)
    out = decode_anchors(deltas, anchors)  # dw clamped to log(1000 / 16): w = 10 * 62.5
    np.testing.assert_allclose(out[0], [5 - 312.5, 10 - 625, 5 + 312.5, 10 + 625], rtol=1e-6)
    assert np.isnan(out[1, [0, 2]]).all() and not np.isnan(out[1, [1, 3]]).any()
    np.testing.assert_allclose(out[2, [0, 2]], [5, 5], atol=1e-6)  # exp(-100) * 10: a zero-width box
    unclamped = decode_anchors(deltas[:1], anchors[:1], clip=None)
    assert np.isinf(unclamped).all()  # exp(100) overflows float32: the NMS ops drop such boxes


def _yolov5_nms_input(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLOv5 utils/general.py non_max_suppression: ``x[:, 5:] *= x[:, 4:5]``, ``box = xywh2xyxy(x[:, :4])``."""
    x = x.clone()
    x[:, 5:] *= x[:, 4:5]
    y = x[:, :4].clone()
    y[:, 0] = x[:, 0] - x[:, 2] / 2
    y[:, 1] = x[:, 1] - x[:, 3] / 2
    y[:, 2] = x[:, 0] + x[:, 2] / 2
    y[:, 3] = x[:, 1] + x[:, 3] / 2
    return y, x[:, 5:]


def test_decode_yolo_is_yolov5_and_yolov8_nms_input() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(10):
        n, c = int(rng.integers(1, 3000)), int(rng.choice([1, 3, 80]))
        pred = np.concatenate([random_boxes(rng, n, np.float64, fmt="cxcywh"), rng.random((n, 1 + c))], 1).astype(np.float32)
        boxes, scores = decode_yolo(pred)
        want_boxes, want_scores = _yolov5_nms_input(torch.from_numpy(pred))
        np.testing.assert_array_equal(boxes, want_boxes.numpy(), err_msg=f"seed={seed}")
        np.testing.assert_array_equal(scores, want_scores.numpy(), err_msg=f"seed={seed}")
        # YOLOv8: [4 + classes, boxes], no objectness: ``x.transpose(-1, -2)``, ``box, cls = x.split((4, nc), 1)``
        v8 = np.ascontiguousarray(np.delete(pred, 4, axis=1).T)
        boxes8, scores8 = decode_yolo(v8, objectness=False, transposed=True)
        np.testing.assert_array_equal(boxes8, want_boxes.numpy())
        np.testing.assert_array_equal(scores8, pred[:, 5:])


def test_decode_yolo_sigmoid_and_formats() -> None:
    pred = np.array([[10, 20, 30, 40, 0.0, 2.0, -2.0]], np.float64)
    boxes, scores = decode_yolo(pred, sigmoid=True, box_format="xywh")
    assert boxes.tolist() == [[10, 20, 40, 60]]
    s = 1 / (1 + np.exp(-np.array([2.0, -2.0])))
    np.testing.assert_allclose(scores[0], 0.5 * s, rtol=1e-15)
    boxes, _ = decode_yolo(pred, box_format="xyxy")
    assert boxes.tolist() == [[10, 20, 30, 40]]


def _yolov5_detect_level(x: torch.Tensor, anchors_px: list[float], stride: float) -> torch.Tensor:
    """YOLOv5 models/yolo.py Detect.forward (inference) and _make_grid, one level, one image."""
    na = len(anchors_px) // 2
    _, ny, nx = x.shape
    no = x.shape[0] // na
    x = x[None].view(1, na, no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
    y_, x_ = torch.arange(ny, dtype=x.dtype), torch.arange(nx, dtype=x.dtype)
    yv, xv = torch.meshgrid(y_, x_, indexing="ij")
    grid = torch.stack((xv, yv), 2).expand(1, na, ny, nx, 2) - 0.5
    anchor_grid = torch.tensor(anchors_px, dtype=x.dtype).view((1, na, 1, 1, 2)).expand(1, na, ny, nx, 2)
    s = x.sigmoid()
    xy, wh, conf = s[..., :2], s[..., 2:4], s[..., 4:]  # .split((2, 2, nc + 1), 4)
    xy = (xy * 2 + grid) * stride
    wh = (wh * 2) ** 2 * anchor_grid
    return torch.cat((xy, wh, conf), 4).view(na * nx * ny, no)


def _yolox_decode_level(x: torch.Tensor, stride: float) -> torch.Tensor:
    """YOLOX yolo_head.py: ``cat([reg, obj.sigmoid(), cls.sigmoid()], 1)``, flatten, decode_outputs."""
    out = torch.cat([x[:4], x[4:].sigmoid()], 0)
    _, h, w = x.shape
    out = out.flatten(start_dim=1).permute(1, 0).clone()
    yv, xv = torch.meshgrid([torch.arange(h), torch.arange(w)], indexing="ij")
    grid = torch.stack((xv, yv), 2).view(-1, 2).to(x.dtype)
    out[..., :2] = (out[..., :2] + grid) * stride
    out[..., 2:4] = torch.exp(out[..., 2:4]) * stride
    return out


def test_decode_grid_is_yolov5_detect_and_yolox_decode() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(8):
        c, stride = int(rng.choice([1, 80])), float(rng.choice([8, 16, 32]))
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        anchors = [float(v) for v in rng.uniform(5, 300, 6)]
        f = (rng.standard_normal((3 * (5 + c), h, w)) * 3).astype(np.float32)
        got = decode_grid(f, stride=stride, style="yolov5", anchors=anchors)
        want = _yolov5_detect_level(torch.from_numpy(f), anchors, stride).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5, err_msg=f"seed={seed}")
        fx = f[: 5 + c]
        got = decode_grid(fx, stride=stride, style="yolox")
        want = _yolox_decode_level(torch.from_numpy(fx), stride).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5, err_msg=f"seed={seed}")


def test_decode_errors_name_the_op() -> None:
    with pytest.raises(InputError, match=r"detect.decode_yolo: prediction must be \[boxes, 5 \+ classes\]"):
        decode_yolo(np.ones((10, 5), np.float32))
    with pytest.raises(InputError, match=r"detect.decode_anchors: input 'anchors' has 3 rows; 'boxes' has 2"):
        decode_anchors(np.ones((2, 4), np.float32), np.ones((3, 4), np.float32))
    with pytest.raises(InputError, match=r"detect.decode_grid: features must have A × \(5 \+ classes\) channels \(A = 3"):
        decode_grid(np.ones((20, 4, 4), np.float32), stride=8, anchors=[1, 2, 3, 4, 5, 6])
    with pytest.raises(ParamError, match=r"detect.decode_grid: style 'yolov5' needs anchors"):
        decode_grid(np.ones((6, 4, 4), np.float32), stride=8)
    with pytest.raises(ParamError, match=r"detect.decode_grid: stride must be positive"):
        decode_grid(np.ones((6, 4, 4), np.float32), stride=0, style="yolox")
    with pytest.raises(ParamError, match=r"detect.decode_anchors: parameter 'weights'"):
        decode_anchors(np.ones((2, 4), np.float32), np.ones((2, 4), np.float32), weights=[1, 1, 0, 1])
