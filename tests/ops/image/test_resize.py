"""image.resize: the kit, sizes as torchvision computes them, OpenCV / torchvision semantics, errors."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional._geometry import _compute_resized_output_size

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.image._resample import nearest_index, taps
from twinpipe.ops.image._resize import output_size, resize, resize_reference
from twinpipe.ops.testing import check_op

MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST_EXACT}


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _noise(rng: np.random.Generator, h: int, w: int, c: int, dtype: type = np.uint8) -> np.ndarray:
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, (h, w, c), endpoint=True, dtype=dtype)
    return rng.random((h, w, c), dtype=np.float32)


def _sizes(rng: np.random.Generator, grow: bool | None = None) -> tuple[int, int, int, int]:
    """Odd, random in- and output sizes; both sides shrinking, both growing, or anything."""
    h, w = (int(v) for v in rng.integers(1, 60, 2))
    if grow is None:
        oh, ow = (int(v) for v in rng.integers(1, 80, 2))
    elif grow:
        oh, ow = h + int(rng.integers(0, 60)), w + int(rng.integers(0, 60))
    else:
        h, w = h + 8, w + 8
        oh, ow = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    return h, w, oh, ow


def _tv(image: np.ndarray, oh: int, ow: int, mode: str, antialias: bool, contiguous: bool = True) -> np.ndarray:
    """torchvision v2 on the CHW tensor of an HWC image (contiguous CHW, or the channels-last view)."""
    t = torch.from_numpy(image).permute(2, 0, 1)
    try:
        out = F.resize(t.contiguous() if contiguous else t, [oh, ow], interpolation=MODES[mode], antialias=antialias)
    except RuntimeError as e:
        # torch 2.14 trips an internal assert on a contiguous uint8 CHW bicubic resize to 1×1
        # ("num_channels == unpacked_output.size(0)"); its channels-last path computes it
        if not (contiguous and "INTERNAL ASSERT" in str(e)):
            raise
        out = F.resize(t, [oh, ow], interpolation=MODES[mode], antialias=antialias)
    return out.permute(1, 2, 0).contiguous().numpy()


def _cv(image: np.ndarray, oh: int, ow: int, flag: int) -> np.ndarray:
    return cv2.resize(image, (ow, oh), interpolation=flag).reshape(oh, ow, image.shape[2])


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def test_check_resize() -> None:
    report = check_op(resize)
    assert {"cpu/uint8", "cpu/uint16", "cpu/float32"} <= set(report.cases)


@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 17])
def test_kernel_equals_reference_on_larger_images(c: int) -> None:
    # bigger than the kit's images: many vector groups, long windows, both pass orders, the
    # scalar paths (5 channels; the last row's reads near the end of the image)
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(4):
        h, w = (int(v) for v in rng.integers(60, 200, 2))
        oh, ow = (int(v) for v in rng.integers(20, 260, 2))
        for mode in ("bilinear", "bicubic", "area"):
            aa = bool(rng.random() < 0.5)
            for dtype, tol in ((np.uint8, 0), (np.uint16, 1), (np.float32, 1e-4)):
                image = _noise(rng, h, w, c, dtype)
                got = resize(image, size=[oh, ow], interpolation=mode, antialias=aa)
                want = resize_reference(image, oh, ow, mode, aa)
                assert _max_diff(got, want) <= tol, f"seed={seed} {image.shape}->{(oh, ow)} {mode} aa={aa} {dtype}"


def test_output_size_matches_torchvision() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 2000, 2))
        size = int(rng.integers(1, 600))
        max_size = size + int(rng.integers(1, 900)) if rng.random() < 0.4 else None
        msg = f"seed={seed} {(h, w)} size={size} max_size={max_size}"
        want = _compute_resized_output_size((h, w), [size], max_size)  # what v2 Resize(size, max_size) does
        assert list(output_size(h, w, size, "shorter", max_size)) == [max(v, 1) for v in want], msg
        want = _compute_resized_output_size((h, w), None, size)  # v2 Resize(None, max_size=size)
        assert list(output_size(h, w, size, "longer")) == [max(v, 1) for v in want], msg
    # the op itself: 1080p to shorter side 256 is 256 × 455 (int truncation of 455.1)
    assert resize(np.zeros((1080, 1920, 3), np.uint8), size=256, fit="shorter").shape == (256, 455, 3)
    assert resize(np.zeros((1920, 1080, 1), np.uint8), size=256, fit="longer").shape == (256, 144, 1)
    assert resize(np.zeros((10, 20, 3), np.uint8), size=7).shape == (7, 7, 3)


@pytest.mark.parametrize("grow", [False, True, None])
def test_bilinear_without_antialias_matches_opencv(grow: bool | None) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w, oh, ow = _sizes(rng, grow)
        image = _noise(rng, h, w, int(rng.choice([1, 3, 4])))
        got = resize(image, size=[oh, ow], interpolation="bilinear", antialias=False)
        assert _max_diff(got, _cv(image, oh, ow, cv2.INTER_LINEAR)) <= 1, f"seed={seed} {image.shape}->{(oh, ow)}"


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
def test_uint8_matches_torchvision(mode: str, antialias: bool) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for i in range(40):
        h, w, oh, ow = _sizes(rng, grow=[False, True, None][i % 3])
        image = _noise(rng, h, w, int(rng.choice([1, 3, 4])))
        got = resize(image, size=[oh, ow], interpolation=mode, antialias=antialias)
        want = _tv(image, oh, ow, mode, antialias, contiguous=bool(i % 2))
        assert _max_diff(got, want) <= 1, f"seed={seed} {image.shape}->{(oh, ow)}"


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
def test_float32_matches_torchvision(mode: str, antialias: bool) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(30):
        # sides of 2 or more: torch's float antialias kernel mis-resamples 1-pixel-wide images
        # (torch 2.x: a 50×1 → 58×1 bilinear enlargement is off by up to 0.5; uint8 is right)
        h, w, oh, ow = (max(v, 2) for v in _sizes(rng))
        image = _noise(rng, h, w, 3, np.float32)
        got = resize(image, size=[oh, ow], interpolation=mode, antialias=antialias)
        assert _max_diff(got, _tv(image, oh, ow, mode, antialias)) <= 1e-4, f"seed={seed} {image.shape}->{(oh, ow)}"


def test_bilinear_antialias_changes_only_shrinking() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(30):
        h, w, oh, ow = _sizes(rng, grow=True)
        image = _noise(rng, h, w, 3)
        a = resize(image, size=[oh, ow], antialias=True)
        np.testing.assert_array_equal(a, resize(image, size=[oh, ow], antialias=False), err_msg=f"seed={seed}")


def test_nearest_is_exact() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(60):
        h, w, oh, ow = _sizes(rng)
        image = _noise(rng, h, w, int(rng.choice([1, 3, 4])), [np.uint8, np.uint16, np.float32][int(rng.integers(3))])
        got = resize(image, size=[oh, ow], interpolation="nearest")
        msg = f"seed={seed} {image.shape}->{(oh, ow)}"
        if image.dtype == np.uint8:  # torchvision's nearest-exact takes uint8
            np.testing.assert_array_equal(got, _tv(image, oh, ow, "nearest", False), err_msg=msg)
        # OpenCV agrees except where the point lies exactly on a pixel border: there its 16-bit
        # fixed point can pick the left pixel
        ys, xs = np.arange(oh), np.arange(ow)
        ok_y, ok_x = (2 * ys + 1) * h % (2 * oh) != 0, (2 * xs + 1) * w % (2 * ow) != 0
        want = _cv(image, oh, ow, cv2.INTER_NEAREST_EXACT)
        np.testing.assert_array_equal(got[ok_y][:, ok_x], want[ok_y][:, ok_x], err_msg=msg)
        np.testing.assert_array_equal(got, image[nearest_index(h, oh)][:, nearest_index(w, ow)], err_msg=msg)


@pytest.mark.parametrize("grow", [False, True])
def test_area_matches_opencv(grow: bool) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w, oh, ow = _sizes(rng, grow)
        image = _noise(rng, h, w, int(rng.choice([1, 3, 4])))
        got = resize(image, size=[oh, ow], interpolation="area")
        want = _cv(image, oh, ow, cv2.INTER_AREA)
        msg = f"seed={seed} {image.shape}->{(oh, ow)}"
        if grow:  # OpenCV's float border test can miss an output that starts exactly on a source border
            ok_y, ok_x = np.arange(oh) * h % oh != 0, np.arange(ow) * w % ow != 0
            ok_y[0] = ok_x[0] = True
            got, want = got[ok_y][:, ok_x], want[ok_y][:, ok_x]
        assert _max_diff(got, want) <= 1, msg


def test_area_is_exact_box_average() -> None:
    # an integer factor: every output pixel is the plain mean of its block
    seed = _seed()
    rng = np.random.default_rng(seed)
    image = _noise(rng, 12 * 3, 7 * 4, 3).astype(np.float32)
    got = resize(image, size=[12, 7], interpolation="area")
    want = image.reshape(12, 3, 7, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"seed={seed}")


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic", "area"])
def test_constant_images_stay_constant(mode: str) -> None:
    # integer weights sum to exactly 2**14: no drift, no overshoot on flat areas
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(10):
        h, w, oh, ow = _sizes(rng)
        value = int(rng.integers(0, 256))
        image = np.full((h, w, 3), value, np.uint8)
        for aa in (True, False):
            got = resize(image, size=[oh, ow], interpolation=mode, antialias=aa)
            assert (got == value).all(), f"seed={seed} {(h, w)}->{(oh, ow)} value={value}"


def test_tables_are_normalised() -> None:
    for n_in, n_out in [(1080, 256), (17, 40), (5, 1), (1, 9), (33, 33)]:
        for mode in ("bilinear", "bicubic", "area"):
            for aa in (True, False):
                t = taps(n_in, n_out, mode, aa)
                assert (t.wq.sum(axis=1) == 1 << 14).all()
                np.testing.assert_allclose(t.weights.sum(axis=1), 1.0)
                assert (t.first >= 0).all() and (t.first + t.width <= n_in).all()


def test_torch_and_non_contiguous_inputs() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    image = _noise(rng, 41, 53, 3)
    want = resize(image, size=[19, 77])
    chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    got = resize(chw.permute(1, 2, 0), size=[19, 77])  # a strided HWC view of a CHW tensor
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(resize(image[::-1, ::2], size=[19, 77]), resize(image[::-1, ::2].copy(), size=[19, 77]))


def test_same_size_is_a_copy() -> None:
    image = _noise(np.random.default_rng(_seed()), 9, 11, 3)
    for mode in ("nearest", "bilinear", "bicubic", "area"):
        got = resize(image, size=[9, 11], interpolation=mode)
        np.testing.assert_array_equal(got, image)
        assert got is not image


def test_bad_params() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    cases = [
        ({"size": [4, 5], "fit": "shorter"}, "'size' must be one integer with fit='shorter'"),
        ({"size": 0}, "parameter 'size'"),
        ({"size": [4, 0]}, "parameter 'size'"),
        ({"size": 4, "max_size": 10}, "'max_size' only applies with fit='shorter'"),
        ({"size": 4, "fit": "shorter", "max_size": 4}, "'max_size' must be greater than 'size' (4)"),
        ({"size": 4, "fit": "widest"}, "parameter 'fit': expected one of 'exact', 'shorter', 'longer'"),
        ({"size": 4, "interpolation": "lanczos"}, "parameter 'interpolation': expected one of 'nearest'"),
        ({"size": 4, "antialias": "yes"}, "parameter 'antialias': expected true or false"),
        ({"sizes": 4}, "unknown parameter 'sizes'"),
    ]
    for params, text in cases:
        with pytest.raises(ParamError, match="image.resize") as info:
            resize(image, **params)
        assert text in str(info.value), (params, str(info.value))


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match=r"image.resize: input 'image' has dtype int32; expected one of uint8, uint16, float32"):
        resize(np.zeros((4, 4, 3), np.int32), size=2)
    with pytest.raises(InputError, match=r"image.resize: input 'image' must have shape \[H W C\]"):
        resize(np.zeros((4, 4), np.uint8), size=2)
    with pytest.raises(InputError, match=r"image.resize: input 'image' is empty"):
        resize(np.zeros((0, 4, 3), np.uint8), size=2)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "area"])
def test_splitting_rows_over_threads_gives_the_same_bits(dtype: type, interpolation: str) -> None:
    from twinpipe.ops import get_num_threads, set_num_threads

    rng = np.random.default_rng()
    img = (rng.random((301, 257, 3)) * 255).astype(dtype)
    before = get_num_threads()
    results: dict[tuple[int, str], np.ndarray] = {}
    try:
        for n in (1, 2, 3):
            set_num_threads(n)
            for size, fit in ((97, "shorter"), ((411, 133), "exact")):
                results[n, fit] = resize(img, size=size, fit=fit, interpolation=interpolation)
    finally:
        set_num_threads(before)
    for (n, fit), r in results.items():
        np.testing.assert_array_equal(r, results[1, fit], err_msg=f"{n} threads, fit={fit}")
