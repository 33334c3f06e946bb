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


def test_resize_is_torchvision_nearest_exact() -> None:
    rng, seed = _rng()
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(1, 120, size=2))
        oh, ow = (int(v) for v in rng.integers(1, 400, size=2))
        labels = rng.integers(0, 21, size=(h, w)).astype(np.uint8)
        want = F.resize(torch.from_numpy(labels)[None], [oh, ow], interpolation=InterpolationMode.NEAREST_EXACT)[0].numpy()
        got = resize(labels, np.array([oh, ow]))
        assert got.dtype == np.uint8 and got.shape == (oh, ow)
        np.testing.assert_array_equal(got, want, err_msg=f"seed={seed} {h}x{w} -> {oh}x{ow}")
        # the same pixels as image.resize's nearest
        np.testing.assert_array_equal(got, image.resize(labels[..., None], size=[oh, ow], interpolation="nearest")[..., 0])


def test_resize_int64_labels_as_torch_interpolate() -> None:
    rng, seed = _rng()
    for _ in range(10):
        h, w = (int(v) for v in rng.integers(1, 60, size=2))
        oh, ow = (int(v) for v in rng.integers(1, 200, size=2))
        labels = rng.integers(0, 1000, size=(h, w)).astype(np.int64)
        # torch has no integer nearest-exact; its float32 path computes the source index as
        # torchvision's NEAREST_EXACT does (float64 rounds a few boundary rows the other way),
        # and labels below 2**24 are exact in float32
        t = torch.from_numpy(labels).float()[None, None]
        want = torch.nn.functional.interpolate(t, size=(oh, ow), mode="nearest-exact")[0, 0].long().numpy()
        got = resize(labels, np.array([oh, ow], np.int32))
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want, err_msg=f"seed={seed}")


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
