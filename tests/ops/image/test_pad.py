"""image.pad: the kit, np.pad and cv2.copyMakeBorder semantics, padding forms, errors."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.image._common import random_image
from twinpipe.ops.image._pad import Padding, pad
from twinpipe.ops.testing import check_op

_CV_BORDER = {"constant": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _cv_pad(image: np.ndarray, t: int, b: int, left: int, r: int, mode: str, value: list[float] | None = None) -> np.ndarray:
    out = cv2.copyMakeBorder(image, t, b, left, r, _CV_BORDER[mode], value=value if value is not None else [0, 0, 0, 0])
    return out.reshape(out.shape[0], out.shape[1], image.shape[2])  # OpenCV drops a single channel


def test_check_pad() -> None:
    check_op(pad)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_pad_matches_numpy_and_opencv(mode: str, dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(15):
        image = random_image(rng, dtype, max_side=11)
        h, w = image.shape[:2]
        # up to three times the image: reflect then mirrors more than once
        t, b, left, r = (int(v) for v in rng.integers(0, 3 * max(h, w) + 2, size=4))
        got = pad(image, padding=[t, b, left, r], padding_mode=mode)
        msg = f"seed={seed} image={image.shape} padding={(t, b, left, r)}"
        np.testing.assert_array_equal(got, np.pad(image, ((t, b), (left, r), (0, 0)), mode=mode), err_msg=msg)
        np.testing.assert_array_equal(got, _cv_pad(image, t, b, left, r, mode), err_msg=msg)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_pad_fill_per_channel_matches_opencv(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(10):
        image = random_image(rng, dtype, max_side=9)
        c = image.shape[2]
        # fractional and out-of-range fills: OpenCV rounds half to even and saturates for integers
        fill = [float(v) for v in rng.uniform(-100, 70000, size=c)]
        fill[0] = float(rng.integers(0, 200)) + 0.5
        t, b, left, r = (int(v) for v in rng.integers(0, 6, size=4))
        got = pad(image, padding=[t, b, left, r], fill=fill)
        want = _cv_pad(image, t, b, left, r, "constant", fill + [0.0] * (4 - c))
        np.testing.assert_array_equal(got, want, err_msg=f"seed={seed} image={image.shape} fill={fill}")
    one = pad(np.zeros((2, 2, 3), np.float32) + 7, padding=1, fill=2.25)
    assert (one[0] == 2.25).all() and (one[1:3, 1:3] == 7).all()


def test_pad_reflect_one_pixel_axis_repeats_it() -> None:
    rng = np.random.default_rng(_seed())
    image = rng.integers(1, 65536, size=(1, 3, 2), dtype=np.uint16)
    got = pad(image, padding=[4, 2, 5, 6], padding_mode="reflect")
    np.testing.assert_array_equal(got, np.pad(image, ((4, 2), (5, 6), (0, 0)), mode="reflect"))
    np.testing.assert_array_equal(got, _cv_pad(image, 4, 2, 5, 6, "reflect"))
    assert (got == got[4:5]).all()  # every row is the image's one row, padded


def test_padding_forms() -> None:
    rng = np.random.default_rng(_seed())
    image = rng.random((5, 8, 3), dtype=np.float32)
    assert Padding().check(3) == (3, 3, 3, 3)
    assert Padding().check([2, 5]) == (2, 2, 5, 5)  # [vertical, horizontal]
    assert Padding().check((1, 2, 3, 4)) == (1, 2, 3, 4)  # [top, bottom, left, right]
    np.testing.assert_array_equal(pad(image, padding=3, padding_mode="edge"), np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="edge"))
    np.testing.assert_array_equal(pad(image, padding=[2, 5], padding_mode="reflect"), np.pad(image, ((2, 2), (5, 5), (0, 0)), mode="reflect"))
    got = pad(image, padding=[1, 2, 3, 4], fill=9)
    assert got.shape == (5 + 1 + 2, 8 + 3 + 4, 3)
    np.testing.assert_array_equal(got[1:6, 3:11], image)
    assert pad(image, padding=0).tobytes() == image.tobytes()


def test_pad_batches() -> None:
    rng = np.random.default_rng(_seed())
    batch = rng.integers(0, 256, size=(2, 4, 3, 3), dtype=np.uint8)
    got = pad(batch, padding=[2, 1], padding_mode="reflect")
    assert got.shape == (2, 8, 5, 3)
    for i in range(2):
        np.testing.assert_array_equal(got[i], np.pad(batch[i], ((2, 2), (1, 1), (0, 0)), mode="reflect"))
    ragged = pad([batch[0], batch[1, :2]], padding=1, fill=[1, 2, 3])
    assert [r.shape for r in ragged] == [(6, 5, 3), (4, 5, 3)]


def test_pad_param_errors() -> None:
    image = np.ones((4, 4, 3), np.uint8)
    expected = r"expected a non-negative integer, \[vertical, horizontal\] or \[top, bottom, left, right\]"
    for bad in (-1, [1, 2, 3], [1, -2], "3", 1.5, [1.0, 2.0]):
        with pytest.raises(ParamError, match=rf"image\.pad: parameter 'padding': {expected}"):
            pad(image, padding=bad)
    with pytest.raises(ParamError, match=r"image\.pad: parameter 'padding_mode': expected one of 'constant', 'edge', 'reflect', got 'wrap'"):
        pad(image, padding=1, padding_mode="wrap")
    with pytest.raises(ParamError, match=r"image\.pad: parameter 'fill' only applies to padding_mode 'constant', got padding_mode 'edge'"):
        pad(image, padding=1, padding_mode="edge", fill=3)
    with pytest.raises(ParamError, match=r"image\.pad: parameter 'padding' is required"):
        pad(image)


def test_pad_input_errors() -> None:
    with pytest.raises(InputError, match=r"image\.pad: parameter 'fill' has 2 values but the image has 3 channels; expected 1 value or 3"):
        pad(np.ones((4, 4, 3), np.uint8), padding=1, fill=[1, 2])
    with pytest.raises(InputError, match=r"image\.pad: parameter 'fill' has 2 values but the image has 4 channels"):
        pad(np.ones((2, 4, 4, 4), np.uint8), padding=1, fill=[1, 2])  # a dense batch
    with pytest.raises(InputError, match=r"image\.pad: input 'image' must have shape \[H W C\]"):
        pad(np.ones((4,), np.uint8), padding=1)
    with pytest.raises(InputError, match=r"image\.pad: input 'image' has dtype float64; expected one of uint8, uint16, float32"):
        pad(np.ones((4, 4, 1)), padding=1)
