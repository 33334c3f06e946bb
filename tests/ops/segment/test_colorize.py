"""segment.colorize (the VOC devkit's colours, custom palettes, unknown labels) and
segment.counts (torch.bincount parity, unknown labels)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.segment import colorize, counts, voc_palette
from twinpipe.ops.testing import check_op

# PASCAL VOC 2012 devkit: the colour of each of the 21 classes (background … tvmonitor), and 255 "void"
VOC = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
    (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
]  # fmt: skip
VOID = (224, 224, 192)


def _rng() -> tuple[np.random.Generator, int]:
    seed = int.from_bytes(os.urandom(4), "little")
    return np.random.default_rng(seed), seed


def test_check_colorize() -> None:
    check_op(colorize)


def test_check_counts() -> None:
    check_op(counts)


def test_voc_palette_is_the_devkits() -> None:
    pal = voc_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert [tuple(int(v) for v in c) for c in pal[:21]] == VOC
    assert tuple(int(v) for v in pal[255]) == VOID
    assert len({tuple(c) for c in pal.tolist()}) == 256


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_colorize_paints_voc_colours(dtype: Any) -> None:
    rng, seed = _rng()
    labels = rng.integers(0, 21, size=(int(rng.integers(1, 50)), int(rng.integers(1, 50)))).astype(dtype)
    labels.flat[0] = 255 if dtype != np.int32 else 20
    got = colorize(labels)
    assert got.dtype == np.uint8 and got.shape == (*labels.shape, 3)
    want = np.array([VOC[v] if v < 21 else VOID for v in labels.ravel()], np.uint8).reshape(got.shape)
    np.testing.assert_array_equal(got, want, err_msg=f"seed={seed}")


def test_colorize_with_a_custom_palette() -> None:
    palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    labels = np.array([[0, 1], [2, 0]], np.int64)
    np.testing.assert_array_equal(colorize(labels, palette=palette), [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 0, 0]]])
    batch = colorize(np.stack([labels, labels[::-1]]), palette=np.array(palette))
    assert batch.shape == (2, 2, 2, 3)
    t = colorize(torch.from_numpy(labels), palette=palette)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.uint8


def test_colorize_unknown_labels_and_bad_palettes() -> None:
    with pytest.raises(InputError, match=r"segment.colorize: label 3 has no colour in the palette of 3 .*1 pixels"):
        colorize(np.array([[0, 3]], np.int64), palette=[[0, 0, 0]] * 3)
    with pytest.raises(InputError, match=r"segment.colorize: label -1 has no colour"):
        colorize(np.array([[-1, 0]], np.int32))
    with pytest.raises(InputError, match=r"segment.colorize: label 256 has no colour in the palette of 256"):
        colorize(np.array([[256]], np.int64))
    for bad in ("pascal", [], [[0, 0]], [[0, 0, 256]], [[0, 0, -1]], [[0.5, 0, 0]], [[True, 0, 0]]):
        with pytest.raises(ParamError, match="segment.colorize: parameter 'palette'"):
            colorize.bind(palette=bad)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_counts_match_torch_bincount(dtype: Any) -> None:
    rng, seed = _rng()
    for _ in range(10):
        k = int(rng.integers(1, 200))
        labels = rng.integers(0, k, size=(int(rng.integers(1, 80)), int(rng.integers(1, 80)))).astype(dtype)
        got = counts(labels, num_classes=k + 3)
        want = torch.bincount(torch.from_numpy(labels.astype(np.int64)).flatten(), minlength=k + 3).numpy()
        assert got.dtype == np.int64 and got.shape == (k + 3,)
        np.testing.assert_array_equal(got, want, err_msg=f"seed={seed}")
        assert got.sum() == labels.size


def test_counts_unknown_labels_and_batches() -> None:
    with pytest.raises(InputError, match=r"segment.counts: label 21 has no count: num_classes is 21"):
        counts(np.array([[0, 21]], np.uint8), num_classes=21)
    with pytest.raises(InputError, match=r"segment.counts: label -5 has no count"):
        counts(np.array([[-5]], np.int64), num_classes=2)
    with pytest.raises(ParamError, match="segment.counts: parameter 'num_classes' is required"):
        counts(np.zeros((2, 2), np.uint8))
    batch = counts(np.array([[[0, 1], [1, 1]], [[2, 2], [2, 2]]], np.uint8), num_classes=3)
    np.testing.assert_array_equal(batch, [[1, 3, 0], [0, 0, 4]])
