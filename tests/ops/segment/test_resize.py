"""segment.resize: the kit, torchvision NEAREST_EXACT and image.resize's nearest, bad sizes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from twinpipe.ops import InputError, image
from twinpipe.ops.segment import resize
from twinpipe.ops.testing import check_op


def _rng() -> tuple[np.random.Generator, int]:
    seed = int.from_bytes(os.urandom(4), "little")
    return np.random.default_rng(seed), seed


def test_check_resize() -> None:
    check_op(resize)


def _off_border(n_in: int, n_out: int) -> np.ndarray:
    """Output positions whose sample point (i + 0.5) * n_in / n_out is not exactly on a pixel
    border. On a border torch's own uint8 kernels disagree with each other (float32 vs double
    rounding, by code path), so the comparison leaves those rows and columns out."""
    i = np.arange(n_out)
    return ((2 * i + 1) * n_in) % (2 * n_out) != 0


def _assert_equal_off_borders(got: np.ndarray, want: np.ndarray, h: int, w: int, msg: str) -> None:
    assert got.shape == want.shape, msg
    keep = np.ix_(_off_border(h, got.shape[0]), _off_border(w, got.shape[1]))
    np.testing.assert_array_equal(got[keep], want[keep], err_msg=msg)


def _tv_uint8(plane: np.ndarray, oh: int, ow: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(plane.astype(np.uint8)))[None]
    return F.resize(t, [oh, ow], interpolation=InterpolationMode.NEAREST_EXACT)[0].numpy().astype(np.int64)


def test_resize_is_torchvision_nearest_exact() -> None:
    rng, seed = _rng()
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(1, 120, size=2))
        oh, ow = (int(v) for v in rng.integers(1, 400, size=2))
        labels = rng.integers(0, 21, size=(h, w)).astype(np.uint8)
        want = F.resize(torch.from_numpy(labels)[None], [oh, ow], interpolation=InterpolationMode.NEAREST_EXACT)[0].numpy()
        got = resize(labels, np.array([oh, ow]))
        assert got.dtype == np.uint8 and got.shape == (oh, ow)
        _assert_equal_off_borders(got, want, h, w, f"seed={seed} {h}x{w} -> {oh}x{ow}")
        # the same pixels as image.resize's nearest
        np.testing.assert_array_equal(got, image.resize(labels[..., None], size=[oh, ow], interpolation="nearest")[..., 0])


def test_resize_int64_labels_as_torch_interpolate() -> None:
    rng, seed = _rng()
    for _ in range(10):
        h, w = (int(v) for v in rng.integers(1, 60, size=2))
        oh, ow = (int(v) for v in rng.integers(1, 200, size=2))
        labels = rng.integers(0, 1000, size=(h, w)).astype(np.int64)
        # torch has no int64 nearest-exact, and its float paths pick a few boundary rows the other
        # way: resize the low and high bytes as uint8 images (torchvision's NEAREST_EXACT, a pure
        # gather) and put them together again
        want = _tv_uint8(labels & 255, oh, ow) | (_tv_uint8(labels >> 8, oh, ow) << 8)
        got = resize(labels, np.array([oh, ow], np.int32))
        assert got.dtype == np.int64
        _assert_equal_off_borders(got, want, h, w, f"seed={seed} {h}x{w} -> {oh}x{ow}")


def test_resize_batches_of_different_sizes() -> None:
    rng, _ = _rng()
    labels = rng.integers(0, 5, size=(2, 10, 12)).astype(np.int32)
    sizes = np.array([[20, 24], [7, 5]])
    got = resize(labels, sizes)
    assert isinstance(got, list) and got[0].shape == (20, 24) and got[1].shape == (7, 5)
    np.testing.assert_array_equal(got[1], resize(labels[1], sizes[1]))
    same = resize(labels, np.array([5, 6]))  # one size for the whole batch
    assert same.shape == (2, 5, 6)
    t = resize(torch.from_numpy(labels[0]), torch.tensor([3, 4]))
    assert isinstance(t, torch.Tensor) and t.shape == (3, 4)


def test_resize_bad_sizes() -> None:
    labels = np.zeros((4, 4), np.uint8)
    for size in ([0, 5], [5, -1], [1 << 15, 1 << 14]):
        with pytest.raises(InputError, match=r"segment.resize: size \[.*\] must be positive with at most"):
            resize(labels, np.array(size))
    with pytest.raises(InputError, match=r"segment.resize: input 'size' must have shape \[2\]"):
        resize(labels, np.array([4, 4, 4]))
    with pytest.raises(InputError, match="segment.resize: input 'size' has dtype float32"):
        resize(labels, np.array([4.0, 4.0], np.float32))
    with pytest.raises(InputError, match="segment.resize: input 'labels' has dtype float32"):
        resize(labels.astype(np.float32), np.array([4, 4]))
