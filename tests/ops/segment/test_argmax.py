"""segment.argmax: the kit, torch.argmax parity (CHW and HWC, ties to the first, NaN), dtypes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.segment import argmax
from twinpipe.ops.testing import check_op


def _rng() -> tuple[np.random.Generator, int]:
    seed = int.from_bytes(os.urandom(4), "little")
    return np.random.default_rng(seed), seed


def test_check_argmax() -> None:
    check_op(argmax)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argmax_matches_torch(dtype: Any) -> None:
    rng, seed = _rng()
    for _ in range(10):
        c, h, w = int(rng.integers(1, 40)), int(rng.integers(1, 70)), int(rng.integers(1, 70))
        x = (rng.standard_normal((c, h, w)) * float(rng.choice([1.0, 1e4]))).astype(dtype)
        want = torch.argmax(torch.from_numpy(x), dim=0).numpy()
        got = argmax(x)
        assert got.dtype == np.int64 and got.shape == (h, w)
        np.testing.assert_array_equal(got, want, err_msg=f"seed={seed}")
        hwc = np.ascontiguousarray(x.transpose(1, 2, 0))
        np.testing.assert_array_equal(argmax(hwc, layout="HWC"), want, err_msg=f"seed={seed}")
        np.testing.assert_array_equal(argmax(x, dtype="int32"), want.astype(np.int32))


def test_argmax_ties_and_nan_go_to_the_first_as_torch_and_numpy() -> None:
    rng, seed = _rng()
    for _ in range(10):
        c, h, w = int(rng.integers(1, 12)), int(rng.integers(1, 30)), int(rng.integers(1, 30))
        x = rng.integers(-2, 3, size=(c, h, w)).astype(np.float32)  # ties everywhere
        if rng.random() < 0.5:
            x[rng.random(x.shape) < 0.05] = rng.choice([np.nan, np.inf, -np.inf])
        want = torch.argmax(torch.from_numpy(x), dim=0).numpy()
        np.testing.assert_array_equal(argmax(x), want, err_msg=f"seed={seed}")
        np.testing.assert_array_equal(argmax(x), np.argmax(x, axis=0), err_msg=f"seed={seed}")
        hwc = np.ascontiguousarray(x.transpose(1, 2, 0))
        np.testing.assert_array_equal(argmax(hwc, layout="HWC"), want, err_msg=f"seed={seed}")
    nan = np.array([[[1.0]], [[np.nan]], [[np.inf]], [[np.nan]]], np.float32)
    assert argmax(nan)[0, 0] == 1


def test_argmax_batches_dtypes_and_torch() -> None:
    rng, _ = _rng()
    x = rng.standard_normal((3, 21, 17, 9)).astype(np.float32)
    got = argmax(x, dtype="uint8")
    assert got.shape == (3, 17, 9) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, torch.argmax(torch.from_numpy(x), dim=1).numpy())
    t = argmax(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64
    np.testing.assert_array_equal(t.numpy(), got)


def test_argmax_bad_input() -> None:
    with pytest.raises(InputError, match="segment.argmax: 300 classes do not fit dtype uint8"):
        argmax(np.zeros((300, 2, 2), np.float32), dtype="uint8")
    assert argmax(np.zeros((256, 2, 2), np.float32), dtype="uint8").max() == 0
    with pytest.raises(InputError, match="segment.argmax.*empty"):
        argmax(np.zeros((0, 4, 4), np.float32))
    with pytest.raises(InputError, match="segment.argmax.*rank 3"):
        argmax(np.zeros((4, 4), np.float32))
    with pytest.raises(ParamError, match="segment.argmax: parameter 'layout'"):
        argmax(np.zeros((2, 4, 4), np.float32), layout="NCHW")
