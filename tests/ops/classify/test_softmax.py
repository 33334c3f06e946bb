"""classify.softmax / log_softmax / sigmoid: the kit, torch parity on large and mixed logits,
the defined behaviour on NaN and infinities, batches and bad input."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import InputError
from twinpipe.ops.classify import log_softmax, sigmoid, softmax
from twinpipe.ops.testing import check_op

INF, NAN = np.inf, np.nan


def _rng() -> tuple[np.random.Generator, int]:
    seed = int.from_bytes(os.urandom(4), "little")
    return np.random.default_rng(seed), seed


def _logits(rng: np.random.Generator, n: int, c: int, kind: str) -> np.ndarray:
    x = rng.standard_normal((n, c))
    if kind == "large":  # ±1e4: exp overflows without the max subtraction
        x = x * 1e4
    elif kind == "mixed":  # huge and ordinary values in one row
        x = x * 3 + rng.choice([-1e4, 0.0, 1e4], size=(n, c))
    return x


def test_check_softmax() -> None:
    check_op(softmax)


def test_check_log_softmax() -> None:
    check_op(log_softmax)


def test_check_sigmoid() -> None:
    check_op(sigmoid)


@pytest.mark.parametrize("kind", ["normal", "large", "mixed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_matches_torch(kind: str, dtype: Any) -> None:
    rng, seed = _rng()
    for _ in range(5):
        n, c = int(rng.integers(1, 9)), int(rng.integers(1, 2000))
        x = _logits(rng, n, c, kind).astype(dtype)
        got = softmax(x)
        want = torch.softmax(torch.from_numpy(x), -1).numpy()
        exact = torch.softmax(torch.from_numpy(x).double(), -1).numpy()
        assert got.dtype == dtype and got.shape == (n, c)
        tol = 2e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=f"seed={seed}")
        np.testing.assert_allclose(got, exact, rtol=0, atol=tol, err_msg=f"seed={seed}")
        np.testing.assert_allclose(got.sum(-1, dtype=np.float64), 1.0, atol=c * tol, err_msg=f"seed={seed}")


@pytest.mark.parametrize("kind", ["normal", "large", "mixed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_matches_torch(kind: str, dtype: Any) -> None:
    rng, seed = _rng()
    for _ in range(5):
        n, c = int(rng.integers(1, 9)), int(rng.integers(1, 2000))
        x = _logits(rng, n, c, kind).astype(dtype)
        got = log_softmax(x)
        want = torch.log_softmax(torch.from_numpy(x), -1).numpy()
        exact = torch.log_softmax(torch.from_numpy(x).double(), -1).numpy()
        assert got.dtype == dtype and np.isfinite(got).all()
        # a float32 result is within 2 ulp of each element's magnitude (|x - max| reaches 2e4)
        rtol, atol = (3e-7, 2e-6) if dtype == np.float32 else (1e-15, 1e-12)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"seed={seed}")
        np.testing.assert_allclose(got, exact, rtol=rtol, atol=atol, err_msg=f"seed={seed}")


def test_softmax_of_extreme_logits() -> None:
    rows = [
        [1e4, -1e4, 0.0, 9999.5],
        [-1e4, -1e4 - 1, -1e4 - 2, -1e4],
        [3e38, -3e38, 0.0],  # x - max overflows float32 to -inf: exp gives 0
        [1e36] * 1000,  # the row's sum overflows: the careful path, uniform result
        [-100.0, 0.0],  # exp(-100) is below float32's normals
    ]
    for dtype in (np.float32, np.float64):
        for row in rows:
            x = np.array(row, dtype)
            for op, peer in ((softmax, torch.softmax), (log_softmax, torch.log_softmax)):
                with np.errstate(over="ignore"):  # -6e38 is -inf in float32
                    want: np.ndarray = peer(torch.from_numpy(x).double(), -1).numpy().astype(dtype)
                np.testing.assert_allclose(op(x), want, rtol=1e-6, atol=1e-7, err_msg=f"{op.name} {dtype.__name__} {row[:4]}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_logits_as_torch(dtype: Any) -> None:
    """NaN anywhere, or only -inf: a NaN row; -inf entries: probability 0 (log -inf) — as torch."""
    rows = [[1.0, NAN, 2.0], [NAN, NAN], [-INF, -INF, -INF], [-INF, 0.0, 1.0], [-INF, 5.0], [NAN, INF, -INF]]
    for row in rows:
        x = np.array(row, dtype)
        for op, peer in ((softmax, torch.softmax), (log_softmax, torch.log_softmax)):
            want = peer(torch.from_numpy(x), -1).numpy()
            np.testing.assert_allclose(op(x), want, atol=1e-7, err_msg=f"{op.name} {row}")
    # a batch: the NaN stays in its own row
    x = np.array([[1.0, NAN], [1.0, 2.0]], dtype)
    got = softmax(x)
    assert np.isnan(got[0]).all()
    np.testing.assert_allclose(got[1], torch.softmax(torch.from_numpy(x[1]), -1).numpy(), atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_positive_infinity_takes_the_whole_mass(dtype: Any) -> None:
    """+inf entries share the mass equally (the limit); torch gives a NaN row here."""
    x = np.array([[INF, 0.0, INF, -INF], [1.0, INF, 2.0, 3.0]], dtype)
    np.testing.assert_array_equal(softmax(x), np.array([[0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]], dtype))
    want_log: np.ndarray = np.array([[-np.log(2), -INF, -np.log(2), -INF], [-INF, 0.0, -INF, -INF]], dtype)
    np.testing.assert_allclose(log_softmax(x), want_log, rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_matches_torch(dtype: Any) -> None:
    rng, seed = _rng()
    x = np.concatenate([rng.standard_normal(500) * 5, rng.standard_normal(500) * 1e4, [INF, -INF, NAN, 0.0, -0.0, 88.0, -88.0, -104.0]])
    x = x.astype(dtype)
    got = sigmoid(x)
    want = torch.sigmoid(torch.from_numpy(x)).numpy()
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-15, err_msg=f"seed={seed}")
    assert got[-8] == 1 and got[-7] == 0 and np.isnan(got[-6]) and got[-5] == 0.5


def test_batches_and_torch_tensors() -> None:
    rng, _ = _rng()
    x = rng.standard_normal((6, 37)).astype(np.float32)
    for op in (softmax, log_softmax, sigmoid):
        dense = op(x)
        np.testing.assert_array_equal(dense, np.stack([op(row) for row in x]))
        t = op(torch.from_numpy(x))
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
        np.testing.assert_array_equal(t.numpy(), dense)
        ragged = op([x[0], x[1, :5]])  # rows of different class counts
        assert isinstance(ragged, list) and ragged[1].shape == (5,)
        np.testing.assert_array_equal(ragged[1], op(x[1, :5]))
        np.testing.assert_array_equal(op(x[:, ::2]), np.stack([op(row[::2]) for row in x]))  # a strided view


def test_bad_input_is_an_error_naming_the_op() -> None:
    for op in (softmax, log_softmax, sigmoid):
        with pytest.raises(InputError, match=f"{op.name}.*empty"):
            op(np.zeros(0, np.float32))
        with pytest.raises(InputError, match=f"{op.name}.*empty batch"):
            op(np.zeros((0, 5), np.float32))
        with pytest.raises(InputError, match=f"{op.name}.*dtype int64.*float32, float64"):
            op(np.arange(5))
        with pytest.raises(InputError, match=f"{op.name}.*float16"):
            op(np.ones(5, np.float16))
        with pytest.raises(InputError, match=f"{op.name}.*shape"):
            op(np.ones((2, 3, 4), np.float32))
