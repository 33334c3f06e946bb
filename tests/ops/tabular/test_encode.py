"""tabular.one_hot and tabular.multi_hot against torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.tabular import multi_hot, one_hot


@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8"])
def test_one_hot_is_torch_one_hot(dtype: str) -> None:
    rng = np.random.default_rng()
    depth = int(rng.integers(1, 40))
    x = rng.integers(0, depth, (int(rng.integers(1, 300)), 3))
    got = one_hot(x, depth=depth, dtype=dtype)
    assert got.shape == (*x.shape, depth) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, F.one_hot(torch.from_numpy(x), depth).numpy().astype(dtype))


def test_one_hot_out_of_range_is_a_zero_row() -> None:
    got = one_hot(np.array([-1, 0, 2, 3, 100, -(2**40)], np.int64), depth=3)
    np.testing.assert_array_equal(got, [[0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(RuntimeError):  # torch refuses what we define as zeros
        F.one_hot(torch.tensor([-1]), 3)


@pytest.mark.parametrize("counts", [False, True])
def test_multi_hot_is_a_torch_scatter_of_the_valid_indices(counts: bool) -> None:
    rng = np.random.default_rng()
    depth, n, k = int(rng.integers(1, 30)), int(rng.integers(1, 200)), int(rng.integers(1, 12))
    x = rng.integers(-2, depth + 2, (n, k)).astype(np.int32)
    got = multi_hot(x, depth=depth, counts=counts, dtype="int64")
    t = torch.from_numpy(x).long()
    valid = (t >= 0) & (t < depth)
    want = torch.zeros(n, depth + 1, dtype=torch.int64)
    want.scatter_add_(1, torch.where(valid, t, depth), torch.ones_like(t))  # invalid ones land in a spare column
    want = want[:, :depth]
    np.testing.assert_array_equal(got, want.numpy() if counts else (want > 0).long().numpy())


def test_multi_hot_shapes_padding_and_saturation() -> None:
    assert multi_hot(np.array([2, -1, 2, 0]), depth=4).tolist() == [1, 0, 1, 0]
    assert multi_hot(np.array([2, -1, 2, 0]), depth=4, counts=True).tolist() == [1, 0, 2, 0]
    assert multi_hot(np.empty((3, 0), np.int64), depth=2).tolist() == [[0, 0]] * 3
    assert multi_hot(np.empty((0, 5), np.int64), depth=2).shape == (0, 2)
    assert multi_hot(np.zeros((2, 3, 4), np.int64), depth=2).shape == (2, 3, 2)
    assert multi_hot(np.zeros((1, 300), np.int64), depth=1, counts=True, dtype="uint8").tolist() == [[255]]
    assert one_hot(np.empty(0, np.int64), depth=4).shape == (0, 4)
    t = multi_hot(torch.tensor([[1, 1], [0, -1]]), depth=2)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.tolist() == [[0, 1], [1, 0]]


def test_errors_name_the_op() -> None:
    with pytest.raises(ParamError, match="tabular.one_hot: parameter 'depth'"):
        one_hot(np.arange(3), depth=0)
    with pytest.raises(ParamError, match="tabular.multi_hot: parameter 'dtype'"):
        multi_hot(np.zeros((1, 2), np.int64), depth=2, dtype="float16")
    with pytest.raises(InputError, match="tabular.one_hot: input 'index' has dtype float32"):
        one_hot(np.zeros(3, np.float32), depth=2)
    with pytest.raises(InputError, match=r"tabular.multi_hot: input 'index' must have shape \[\.\.\., K\]"):
        multi_hot(np.asarray(3), depth=2)


@pytest.mark.parametrize("op", [one_hot, multi_hot], ids=lambda op: op.name)
def test_passes_the_op_testing_kit(op: Any, kit: Any) -> None:
    report = kit(op)
    assert report.cases["cpu/int64"] == 12 and report.cases["cpu/int32"] == 12
