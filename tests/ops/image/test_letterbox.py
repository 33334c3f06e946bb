"""image.letterbox: the kit, the point mapping, the padding, sizes, and an OpenCV letterbox."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.image._common import random_image
from twinpipe.ops.image._letterbox import letterbox
from twinpipe.ops.testing import check_op


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _cv2_letterbox(image: np.ndarray, size: tuple[int, int], fill: float) -> np.ndarray:
    """YOLOv5's letterbox (auto=False), written independently with OpenCV."""
    h, w = image.shape[:2]
    r = min(size[0] / h, size[1] / w)
    # YOLOv5 rounds; a side rounding to 0 (which would crash cv2) is kept at 1, as documented
    new_w, new_h = max(int(round(w * r)), 1), max(int(round(h * r)), 1)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    out = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = cv2.copyMakeBorder(out, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(fill,) * 4)
    return out.reshape(size[0], size[1], image.shape[2])


def _blocks(rng: np.random.Generator, h: int, w: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An image of ``rows × cols`` flat-coloured blocks (values < 100), its block colours and edges."""
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    colours = rng.integers(0, 100, size=(rows, cols, 3), dtype=np.uint8)
    image = np.empty((h, w, 3), np.uint8)
    for i in range(rows):
        for j in range(cols):
            image[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] = colours[i, j]
    return image, colours, ys, xs


def test_check_letterbox() -> None:
    check_op(letterbox)


def test_sizes_padding_and_centering_for_odd_aspect_ratios() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 120, size=2))
        size = (int(rng.integers(1, 90)), int(rng.integers(1, 90)))
        image = rng.integers(0, 100, size=(h, w, 3), dtype=np.uint8)  # never the fill
        fill = [int(v) for v in rng.integers(101, 256, size=3)]
        out, scale, offset = letterbox(image, size=list(size), fill=fill, interpolation="nearest")
        msg = f"seed={seed} image={image.shape} size={size}"
        assert out.shape == (*size, 3) and out.dtype == np.uint8, msg
        assert scale.dtype == offset.dtype == np.float32 and scale.shape == offset.shape == (2,), msg
        left, top = (int(v) for v in offset)
        new_w, new_h = round(float(scale[0]) * w), round(float(scale[1]) * h)
        # one side fills its target (the limiting one), both within it, each the input's side
        # times the one ratio, rounded (kept at least 1)
        assert (new_h == size[0] or new_w == size[1]) and new_h <= size[0] and new_w <= size[1], msg
        r = min(size[0] / h, size[1] / w)
        assert (abs(new_h - h * r) <= 0.5 or new_h == 1) and (abs(new_w - w * r) <= 0.5 or new_w == 1), msg
        # centred; an odd leftover's extra pixel at the bottom / right
        assert top == (size[0] - new_h) // 2 and left == (size[1] - new_w) // 2, msg
        content = (out != np.array(fill, np.uint8)).any(axis=2)
        assert content[top : top + new_h, left : left + new_w].all(), msg
        assert not content.sum() - content[top : top + new_h, left : left + new_w].sum(), msg
        border = out.copy()
        border[top : top + new_h, left : left + new_w] = fill
        assert (border == np.array(fill, np.uint8)).all(), msg


def test_mapping_sends_points_to_the_same_content_and_back() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(12):
        rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 5))
        h, w = int(rng.integers(20 * rows, 60 * rows)), int(rng.integers(20 * cols, 60 * cols))
        image, colours, ys, xs = _blocks(rng, h, w, rows, cols)
        size = (int(rng.integers(60, 200)), int(rng.integers(60, 200)))
        out, scale, offset = letterbox(image, size=list(size), antialias=False)
        msg = f"seed={seed} image={image.shape} size={size}"
        # points farther than the filter's reach from a block edge keep the block's colour
        margin = 1.5 / float(scale.min()) + 1.5

        def block(x: float, y: float, ys: np.ndarray = ys, xs: np.ndarray = xs, margin: float = margin) -> tuple[int, int] | None:
            i, j = int(np.searchsorted(ys, y, side="right")) - 1, int(np.searchsorted(xs, x, side="right")) - 1
            if min(abs(y - ys[i]), abs(y - ys[i + 1]), abs(x - xs[j]), abs(x - xs[j + 1])) < margin:
                return None
            return i, j

        # random box corners (pixel-edge coordinates) forward: the same colour there
        corners = rng.uniform(0, 1, size=(200, 2)) * np.array([w, h])
        fwd = corners * scale + offset
        checked = 0
        for (x, y), (px, py) in zip(corners, fwd):
            if (b := block(x, y)) is not None:
                np.testing.assert_array_equal(out[int(py), int(px)], colours[b], err_msg=f"{msg} point {(x, y)}")
                checked += 1
        assert checked > 20, msg
        # and back: they return to themselves; output pixel centres map back into their block
        np.testing.assert_allclose((fwd - offset) / scale, corners, rtol=1e-5, atol=1e-3, err_msg=msg)
        new_w, new_h = (round(float(v)) for v in scale * np.array([w, h]))
        for _ in range(100):
            px = float(offset[0]) + int(rng.integers(0, new_w)) + 0.5
            py = float(offset[1]) + int(rng.integers(0, new_h)) + 0.5
            x, y = (px - offset[0]) / scale[0], (py - offset[1]) / scale[1]
            if (b := block(x, y)) is not None:
                np.testing.assert_array_equal(out[int(py), int(px)], colours[b], err_msg=f"{msg} pixel {(px, py)}")


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_matches_an_opencv_letterbox(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(20):
        image = random_image(rng, dtype, channels=(1, 3), max_side=80)
        size = (int(rng.integers(1, 100)), int(rng.integers(1, 100)))
        got, _, _ = letterbox(image, size=list(size), antialias=False)
        peak = max(1.0, float(image.max()))  # float32 rounding error grows with the value range
        want = _cv2_letterbox(image, size, 114.0)
        assert got.shape == want.shape and got.dtype == want.dtype
        lsb = 1 if dtype == np.uint8 else 1e-4 * peak
        np.testing.assert_allclose(got.astype(np.float64), want, atol=lsb, rtol=0, err_msg=f"seed={seed} image={image.shape} size={size}")


def test_scaleup_false_never_enlarges() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    image = random_image(rng, np.uint16, channels=(3,), max_side=30)
    h, w = image.shape[:2]
    out, scale, offset = letterbox(image, size=[h + 7, w + 10], scaleup=False, fill=[1, 2, 3])
    assert scale.tolist() == [1.0, 1.0] and offset.tolist() == [5.0, 3.0]
    np.testing.assert_array_equal(out[3 : 3 + h, 5 : 5 + w], image)  # not resampled at all
    assert (out[:3] == [1, 2, 3]).all() and (out[3 + h :] == [1, 2, 3]).all()
    big, scale, _ = letterbox(image, size=[2 * h, 2 * w], scaleup=True)
    assert scale.tolist() == [2.0, 2.0] and big.shape == (2 * h, 2 * w, 3)
    small, scale, _ = letterbox(np.stack([image, image]), size=[h, max(w // 2, 1)], scaleup=False)
    assert small.shape == (2, h, max(w // 2, 1), 3) and scale[0, 0] <= 1.0


def test_fill_defaults_to_114_and_saturates() -> None:
    image = np.full((10, 20, 3), 7, np.uint8)
    out, _, offset = letterbox(image, size=20)
    assert offset.tolist() == [0.0, 5.0] and (out[:5] == 114).all() and (out[15:] == 114).all()
    out, _, _ = letterbox(image, size=20, fill=[300, -5, 12.5])
    assert out[0, 0].tolist() == [255, 0, 12]  # rounded half to even and saturated, as image.pad


def test_bad_params_and_inputs_name_the_op() -> None:
    image = np.ones((4, 6, 3), np.uint8)
    with pytest.raises(InputError, match=r"image.letterbox: parameter 'fill' has 2 values but the image has 3 channels"):
        letterbox(image, size=8, fill=[1, 2])
    with pytest.raises(ParamError, match=r"image.letterbox: parameter 'size': expected a positive integer or \[height, width\]"):
        letterbox(image, size=[8, 0])
    with pytest.raises(ParamError, match=r"image.letterbox: parameter 'interpolation': expected one of 'nearest'"):
        letterbox(image, size=8, interpolation="lanczos")
    with pytest.raises(InputError, match=r"image.letterbox: input 'image' must have shape \[H W C\]"):
        letterbox(np.ones((4, 6), np.uint8), size=8)
