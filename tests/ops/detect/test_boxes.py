"""detect box geometry: the kit, torchvision's box_convert / clip / resize of boxes, the letterbox mapping."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import box_convert, clip_boxes_to_image
from torchvision.transforms.v2 import functional as F

from twinpipe.ops import InputError, image
from twinpipe.ops.detect import (
    clip_boxes,
    convert_boxes,
    letterbox_boxes,
    normalized_to_pixels,
    pixels_to_normalized,
    unletterbox_boxes,
)
from twinpipe.ops.detect._common import random_boxes
from twinpipe.ops.testing import check_op

FORMATS = ("xyxy", "xywh", "cxcywh")
OPS = [clip_boxes, convert_boxes, letterbox_boxes, normalized_to_pixels, pixels_to_normalized, unletterbox_boxes]


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_kit(op) -> None:  # type: ignore[no-untyped-def]
    check_op(op)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_convert_is_torchvision_box_convert_bit_for_bit(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for in_fmt in FORMATS:
        for out_fmt in FORMATS:
            boxes = random_boxes(rng, int(rng.integers(1, 500)), dtype, extent=float(rng.choice([1.0, 640.0, 1e5])), fmt=in_fmt)
            boxes[rng.random(boxes.shape) < 0.01] = np.nan
            got = convert_boxes(boxes, in_fmt=in_fmt, out_fmt=out_fmt)
            want = box_convert(torch.from_numpy(boxes), in_fmt, out_fmt).numpy()
            np.testing.assert_array_equal(got, want, err_msg=f"seed={seed} {in_fmt}->{out_fmt}")
            assert got.dtype == boxes.dtype


def test_convert_round_trips_and_keeps_torch_tensors() -> None:
    boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 0.0, 0.0]])
    cxcywh = convert_boxes(boxes, in_fmt="xyxy", out_fmt="cxcywh")
    assert isinstance(cxcywh, torch.Tensor)
    assert cxcywh.tolist() == [[30.0, 50.0, 40.0, 60.0], [0.0, 0.0, 0.0, 0.0]]
    assert convert_boxes(cxcywh, in_fmt="cxcywh", out_fmt="xywh").tolist() == [[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalized_and_pixels_match_torchvision_resize_of_boxes(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    fmt = tv_tensors.BoundingBoxFormat.XYXY
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(1, 4000, 2))
        size = np.array([h, w], [np.int32, np.int64][int(rng.integers(2))])
        unit = random_boxes(rng, int(rng.integers(1, 200)), dtype, extent=1.0)
        got = normalized_to_pixels(unit, size)
        # torchvision: boxes of a 1 × 1 canvas resized to h × w (exact ratios w / 1, h / 1)
        want, _ = F.resize_bounding_boxes(torch.from_numpy(unit), canvas_size=(1, 1), size=[h, w], format=fmt, clamping_mode=None)
        np.testing.assert_array_equal(got, want.numpy(), err_msg=f"seed={seed}")
        pixels = random_boxes(rng, int(rng.integers(1, 200)), dtype, extent=float(max(h, w)))
        back = pixels_to_normalized(pixels, size)
        # torchvision multiplies by the float32 reciprocal; this op divides: a few ulps apart
        want, _ = F.resize_bounding_boxes(torch.from_numpy(pixels), canvas_size=(h, w), size=[1, 1], format=fmt, clamping_mode=None)
        np.testing.assert_allclose(back, want.numpy(), rtol=3e-7, atol=1e-12, err_msg=f"seed={seed}")


def test_clip_is_torchvision_clip_boxes_to_image() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        for _ in range(20):
            h, w = (int(v) for v in rng.integers(1, 1000, 2))
            boxes = (random_boxes(rng, int(rng.integers(1, 300)), dtype, extent=1500.0) - dtype(300)).astype(dtype)
            boxes[rng.random(boxes.shape) < 0.02] = np.nan
            boxes[rng.random(boxes.shape) < 0.02] = -np.inf
            boxes[rng.random(boxes.shape) < 0.02] = np.inf
            got = clip_boxes(boxes, np.array([h, w], np.int64))
            want = clip_boxes_to_image(torch.from_numpy(boxes), (h, w)).numpy()
            np.testing.assert_array_equal(got, want, err_msg=f"seed={seed}")


def test_letterbox_mapping_finds_a_painted_rectangle_back_in_the_original() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(12):
        h, w = (int(v) for v in rng.integers(40, 900, 2))
        y0, x0 = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 20))
        y1, x1 = int(rng.integers(y0 + 10, h + 1)), int(rng.integers(x0 + 10, w + 1))
        photo = np.zeros((h, w, 3), np.uint8)
        photo[y0:y1, x0:x1] = 255
        size = [int(v) for v in rng.integers(64, 700, 2)]
        boxed, scale, offset = image.letterbox(photo, size=size, interpolation="nearest", fill=[0])
        ys, xs = np.nonzero(boxed[..., 0] > 127)
        # the rectangle as a detector would see it: pixel edges in the letterboxed image
        found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        back = unletterbox_boxes(found, scale, offset)[0]
        tol = 1.0 / scale.min() + 1  # one letterboxed pixel, mapped back
        msg = f"seed={seed} photo={h}x{w} rect={(x0, y0, x1, y1)} size={size} back={back}"
        assert np.abs(back - [x0, y0, x1, y1]).max() <= tol, msg
        # and forward: the original rectangle lands on the one found
        there = letterbox_boxes(np.array([[x0, y0, x1, y1]], np.float64), scale, offset)[0]
        assert np.abs(there - found[0]).max() <= 1.0, msg


def test_letterbox_and_unletterbox_are_inverse() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 100, np.float64)
    scale, offset = np.array([0.37, 0.37], np.float32), np.array([0, 107], np.float32)
    np.testing.assert_allclose(unletterbox_boxes(letterbox_boxes(boxes, scale, offset), scale, offset), boxes, rtol=1e-12, atol=1e-9)
    # the formula itself, on hand values: x' = x * scale_x + offset_x
    got = letterbox_boxes(np.array([[100.0, 200.0, 300.0, 400.0]]), np.array([0.5, 0.25]), np.array([10.0, 20.0]))
    assert got.tolist() == [[60.0, 70.0, 160.0, 120.0]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: clip_boxes(b, np.array([0, 10])), "detect.clip_boxes: image_size [height, width] must be finite and positive"),
        (lambda b: normalized_to_pixels(b, np.array([np.nan, 10.0])), "detect.normalized_to_pixels: image_size"),
        (lambda b: pixels_to_normalized(b, np.array([-1, 10])), "detect.pixels_to_normalized: image_size"),
        (lambda b: unletterbox_boxes(b, np.array([0.0, 1.0]), np.zeros(2)), "detect.unletterbox_boxes: scale [scale_x, scale_y] must be finite and positive"),
        (lambda b: letterbox_boxes(b, np.ones(2), np.array([np.inf, 0.0])), "detect.letterbox_boxes: offset [pad_left, pad_top] must be finite"),
        (lambda b: convert_boxes(b[:, :3], in_fmt="xyxy", out_fmt="xywh"), "detect.convert_boxes: input 'boxes' must have shape [N 4]"),
        (lambda b: convert_boxes(b[:0], in_fmt="xyxy", out_fmt="xywh"), "detect.convert_boxes: input 'boxes' is empty"),
        (lambda b: convert_boxes(b.astype(np.int64), in_fmt="xyxy", out_fmt="xywh"), "expected one of float32, float64"),
    ],
)
def test_bad_input_is_an_error_naming_the_op(call, message: str) -> None:  # type: ignore[no-untyped-def]
    boxes = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(boxes)


def test_dense_batch_with_per_image_sizes() -> None:
    boxes = np.array([[[-5.0, 5.0, 50.0, 500.0]], [[-5.0, 5.0, 50.0, 500.0]]], np.float32)
    sizes = np.array([[100, 40], [1000, 400]], np.int32)
    assert clip_boxes(boxes, sizes).tolist() == [[[0.0, 5.0, 40.0, 100.0]], [[0.0, 5.0, 50.0, 500.0]]]
