"""image.convert_color: the kit, and OpenCV's cvtColor semantics on random data."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.image._color import CONVERSIONS, convert_color
from twinpipe.ops.testing import check_op


def _rng() -> np.random.Generator:
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def _image(rng: np.random.Generator, dtype: type, c: int) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    if np.dtype(dtype).kind == "f":
        return rng.random((h, w, c), dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, (h, w, c), endpoint=True, dtype=dtype)


def test_check_op() -> None:
    report = check_op(convert_color, cases=30)
    assert {"cpu/uint8", "cpu/uint16", "cpu/float32"} <= set(report.cases)


# (conversion, cv2 code, input channels)
CV_CODES = [
    ("rgb_to_bgr", cv2.COLOR_RGB2BGR, 3),
    ("bgr_to_rgb", cv2.COLOR_BGR2RGB, 3),
    ("rgb_to_gray", cv2.COLOR_RGB2GRAY, 3),
    ("bgr_to_gray", cv2.COLOR_BGR2GRAY, 3),
    ("gray_to_rgb", cv2.COLOR_GRAY2RGB, 1),
    ("rgba_to_rgb", cv2.COLOR_RGBA2RGB, 4),
]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize(("conversion", "code", "channels"), CV_CODES)
def test_matches_opencv(conversion: str, code: int, channels: int, dtype: type) -> None:
    rng = _rng()
    for _ in range(4):
        image = _image(rng, dtype, channels)
        expected = cv2.cvtColor(image, code)
        expected = expected.reshape(*image.shape[:2], -1)  # cv2 drops a size-1 channel axis
        got = convert_color(image, conversion=conversion)
        assert got.dtype == image.dtype
        assert got.shape == expected.shape
        # gray: within 1 LSB (integers) / 1e-5 (float32 on [0, 1]); channel moves: exact
        # integer gray is OpenCV's own fixed point, bit for bit; float32 sums in another order
        atol = 1e-5 if "gray" in conversion.split("_to_")[1] and np.dtype(dtype).kind == "f" else 0
        np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=0, atol=atol)


def test_gray_of_gray_is_exact() -> None:
    # BT.601 weights sum to 1: gray → rgb → gray gives the gray image back, to the last bit
    rng = _rng()
    for dtype in (np.uint8, np.uint16):
        gray = _image(rng, dtype, 1)
        rgb = convert_color(gray, conversion="gray_to_rgb")
        np.testing.assert_array_equal(convert_color(rgb, conversion="rgb_to_gray"), gray)
        np.testing.assert_array_equal(convert_color(rgb[..., ::-1], conversion="bgr_to_gray"), gray)


YUV_CODES = {
    "nv12_to_rgb": cv2.COLOR_YUV2RGB_NV12,
    "nv12_to_bgr": cv2.COLOR_YUV2BGR_NV12,
    "i420_to_rgb": cv2.COLOR_YUV2RGB_I420,
    "i420_to_bgr": cv2.COLOR_YUV2BGR_I420,
}


@pytest.mark.parametrize("conversion", list(YUV_CODES))
def test_yuv_matches_opencv(conversion: str) -> None:
    rng = _rng()
    # even image sizes that are not multiples of 4 included (2×2 the smallest frame)
    for h, w in [(2, 2), (2, 6), (6, 10), (14, 2), *(2 * rng.integers(1, 40, 2) for _ in range(4))]:
        h, w = int(h), int(w)
        frame = rng.integers(0, 256, (h * 3 // 2, w), dtype=np.uint8)  # full range: saturation included
        expected = cv2.cvtColor(frame, YUV_CODES[conversion])
        got = convert_color(frame[..., None], conversion=conversion)
        assert got.shape == (h, w, 3)
        assert got.dtype == np.uint8
        assert np.abs(got.astype(int) - expected).max() == 0  # OpenCV's fixed point, bit for bit


def test_yuv_of_an_encoded_photo_round_trips() -> None:
    # RGB → I420 with OpenCV, back with convert_color: a smooth image comes back close
    rng = _rng()
    h, w = 2 * int(rng.integers(8, 30)), 2 * int(rng.integers(8, 30))
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([40 + 3 * xx, 60 + 2 * yy, 200 - xx - yy], -1).clip(16, 235).astype(np.uint8)
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    nv12 = np.empty_like(i420)
    q = h * w // 4
    nv12[:h] = i420[:h]
    flat = i420.reshape(-1)
    uv = np.stack([flat[h * w : h * w + q], flat[h * w + q :]], -1).reshape(h // 2, w)
    nv12[h:] = uv
    for conversion, frame in (("i420_to_rgb", i420), ("nv12_to_rgb", nv12)):
        back = convert_color(frame[..., None], conversion=conversion)
        assert np.abs(back.astype(int) - rgb).mean() < 3


def test_batches_and_torch() -> None:
    import torch

    rng = _rng()
    frames = rng.integers(0, 256, (3, 12, 8, 1), dtype=np.uint8)  # three 8×8 NV12 frames
    dense = convert_color(frames, conversion="nv12_to_rgb")
    assert dense.shape == (3, 8, 8, 3)
    for i in range(3):
        np.testing.assert_array_equal(dense[i], cv2.cvtColor(frames[i, ..., 0], cv2.COLOR_YUV2RGB_NV12))
    t = convert_color(torch.from_numpy(frames[0]), conversion="nv12_to_bgr")
    assert isinstance(t, torch.Tensor)
    assert t.shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("conversion", "shape", "dtype", "words"),
    [
        ("rgb_to_gray", (5, 5, 4), np.uint8, ["'rgb_to_gray'", "3 channel", "[5, 5, 4]"]),
        ("gray_to_rgb", (5, 5, 3), np.float32, ["'gray_to_rgb'", "1 channel"]),
        ("rgba_to_rgb", (5, 5, 3), np.uint16, ["'rgba_to_rgb'", "4 channel"]),
        ("nv12_to_rgb", (6, 4, 3), np.uint8, ["'nv12_to_rgb'", "1 channel"]),
        ("nv12_to_rgb", (6, 4, 1), np.float32, ["'nv12_to_rgb'", "uint8", "float32"]),
        ("i420_to_bgr", (6, 5, 1), np.uint8, ["'i420_to_bgr'", "even", "width 5"]),
        ("nv12_to_bgr", (7, 4, 1), np.uint8, ["'nv12_to_bgr'", "multiple of 3", "[7, 4, 1]"]),
        ("i420_to_rgb", (8, 4, 1), np.uint8, ["'i420_to_rgb'", "even", "[8, 4, 1]"]),
    ],
)
def test_bad_inputs(conversion: str, shape: tuple[int, ...], dtype: type, words: list[str]) -> None:
    with pytest.raises(InputError) as info:
        convert_color(np.ones(shape, dtype), conversion=conversion)
    msg = str(info.value)
    assert "image.convert_color" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_bad_params() -> None:
    image = np.ones((4, 4, 3), np.uint8)
    with pytest.raises(ParamError) as info:
        convert_color(image, conversion="rgb2gray")
    msg = str(info.value)
    assert "image.convert_color" in msg
    assert "'conversion'" in msg
    assert "'rgb_to_gray'" in msg  # the accepted values are listed
    with pytest.raises(ParamError, match="'conversion' is required"):
        convert_color(image)
    assert len(CONVERSIONS) == 10
