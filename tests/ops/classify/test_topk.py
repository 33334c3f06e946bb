"""classify.topk and classify.threshold: the kit, torch parity (topk on distinct scores, a stable
descending sort on ties and NaN), k against the class count, multi-label decisions."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.classify import sigmoid, threshold, topk
from twinpipe.ops.testing import check_op

NAN, INF = np.nan, np.inf


def _rng() -> tuple[np.random.Generator, int]:
    seed = int.from_bytes(os.urandom(4), "little")
    return np.random.default_rng(seed), seed


def _stable_desc(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's stable descending sort: ties (and NaNs, which rank first) in index order."""
    values, indices = torch.sort(torch.from_numpy(x), dim=-1, descending=True, stable=True)
    return values[..., :k].numpy(), indices[..., :k].numpy()


def test_check_topk() -> None:
    check_op(topk)


def test_check_threshold() -> None:
    check_op(threshold)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_matches_torch_on_distinct_scores(dtype: Any) -> None:
    rng, seed = _rng()
    for _ in range(20):
        n, c = int(rng.integers(1, 9)), int(rng.integers(1, 3000))
        # distinct values: a permutation, spread over a wide range
        x = np.stack([rng.permutation(c) for _ in range(n)]).astype(dtype) * float(rng.choice([1e-3, 1.0, 7.0]))
        x = x + float(rng.choice([0.0, -1e4, 1e4]))
        k = int(rng.integers(1, min(c, 40) + 1)) if rng.random() < 0.7 else int(rng.integers(1, c + 1))
        got = topk(x, k=k)
        want = torch.topk(torch.from_numpy(x), k, dim=-1)
        assert got.values.dtype == dtype and got.indices.dtype == np.int64
        np.testing.assert_array_equal(got.indices, want.indices.numpy(), err_msg=f"seed={seed} k={k} c={c}")
        np.testing.assert_array_equal(got.values, want.values.numpy(), err_msg=f"seed={seed} k={k} c={c}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_ties_go_to_the_lowest_index(dtype: Any) -> None:
    rng, seed = _rng()
    for _ in range(30):
        n, c = int(rng.integers(1, 6)), int(rng.integers(1, 500))
        x = rng.integers(-3, 4, size=(n, c)).astype(dtype)  # few distinct values: ties everywhere
        if rng.random() < 0.5:
            x[rng.random((n, c)) < 0.05] = rng.choice([NAN, INF, -INF, -0.0])
        k = int(rng.integers(1, c + 1))
        got = topk(x, k=k)
        values, indices = _stable_desc(x, k)
        np.testing.assert_array_equal(got.indices, indices, err_msg=f"seed={seed} k={k}")
        np.testing.assert_array_equal(got.values, values, err_msg=f"seed={seed} k={k}")
        # NumPy's stable argsort agrees where there is no NaN
        if not np.isnan(x).any():
            np.testing.assert_array_equal(got.indices, np.argsort(-x, axis=-1, kind="stable")[:, :k])


def test_topk_nan_ranks_first_as_torch() -> None:
    x = np.array([1.0, NAN, 3.0, INF, NAN, -INF], np.float32)
    got = topk(x, k=4)
    np.testing.assert_array_equal(got.indices, [1, 4, 3, 2])
    want = torch.topk(torch.from_numpy(x), 4)
    np.testing.assert_array_equal(got.values, want.values.numpy())  # NaN, NaN, inf, 3
    single = np.array([0.5, NAN, 0.7], np.float32)
    np.testing.assert_array_equal(topk(single, k=3).indices, torch.topk(torch.from_numpy(single), 3).indices.numpy())


def test_topk_signed_zeros_are_equal() -> None:
    np.testing.assert_array_equal(topk(np.array([-0.0, 0.0, -1.0]), k=2).indices, [0, 1])
    np.testing.assert_array_equal(topk(np.array([0.0, -0.0, -1.0]), k=2).indices, [0, 1])


def test_topk_k_against_the_class_count() -> None:
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(topk(x, k=5).indices, [4, 3, 2, 1, 0])  # k = C: a full sort
    with pytest.raises(InputError, match=r"classify.topk: k=6 is more than the 5 classes"):
        topk(x, k=6)
    with pytest.raises(InputError, match=r"classify.topk: k=6 is more than the 5 classes"):
        topk(np.stack([x, x]), k=6)
    with pytest.raises(ParamError, match=r"classify.topk: parameter 'k'"):
        topk(x, k=0)
    with pytest.raises(InputError, match="classify.topk.*empty"):
        topk(np.zeros(0, np.float32), k=1)
    with pytest.raises(InputError, match="classify.topk.*empty batch"):
        topk(np.zeros((0, 4), np.float32), k=1)


def test_topk_batches_and_torch_tensors() -> None:
    rng, _ = _rng()
    x = rng.standard_normal((5, 100)).astype(np.float32)
    for k in (3, 40):  # insertion and heap
        dense = topk(x, k=k)
        assert dense.values.shape == (5, k)
        for i in range(5):
            one = topk(x[i], k=k)
            np.testing.assert_array_equal(dense.indices[i], one.indices)
        t = topk(torch.from_numpy(x), k=k)
        assert isinstance(t.values, torch.Tensor) and isinstance(t.indices, torch.Tensor) and t.indices.dtype == torch.int64
        np.testing.assert_array_equal(t.indices.numpy(), dense.indices)
    ragged = topk([x[0], x[1, :10]], k=3)
    np.testing.assert_array_equal(ragged.indices[1], topk(x[1, :10], k=3).indices)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_matches_torch(dtype: Any) -> None:
    rng, seed = _rng()
    for _ in range(20):
        c = int(rng.integers(1, 300))
        x = rng.standard_normal(c).astype(dtype)
        if rng.random() < 0.3:
            x[rng.integers(0, c, size=3)] = rng.choice([NAN, INF, -INF])
        t = float(rng.choice([0.0, 0.5, 0.1, float(rng.standard_normal())]))
        mask, idx = threshold(x, threshold=t)
        want = torch.from_numpy(x) > t
        np.testing.assert_array_equal(mask, want.numpy(), err_msg=f"seed={seed} t={t}")
        np.testing.assert_array_equal(idx, torch.nonzero(want).flatten().numpy(), err_msg=f"seed={seed} t={t}")
        assert mask.dtype == np.bool_ and idx.dtype == np.int64


def test_threshold_is_strict_in_the_scores_dtype() -> None:
    x = np.array([0.5, 0.5000001, NAN, 0.1], np.float32)
    mask, idx = threshold(x, threshold=0.5)
    np.testing.assert_array_equal(mask, [False, True, False, False])
    np.testing.assert_array_equal(idx, [1])
    # 0.1 in float32 is 0.10000000149…: equal to the threshold 0.1 rounded to float32, not above
    assert not threshold(x, threshold=0.1).mask[3]
    assert threshold(x.astype(np.float64), threshold=0.1).mask[3]  # float64(float32(0.1)) > 0.1
    none = threshold(np.zeros(3), threshold=1.0)
    assert none.indices.shape == (0,)


def test_threshold_after_sigmoid_is_the_logit_sign() -> None:
    rng, _ = _rng()
    logits = rng.standard_normal((4, 50)).astype(np.float32)
    logits[np.abs(logits) < 1e-6] = 1.0  # away from the rounding boundary
    probs = threshold(sigmoid(logits), threshold=0.5)
    raw = threshold(logits, threshold=0.0)
    np.testing.assert_array_equal(probs.mask, raw.mask)
    assert isinstance(probs.indices, list) or probs.indices.shape[0] == 4  # ragged unless counts agree
    for a, b in zip(probs.indices, raw.indices):
        np.testing.assert_array_equal(a, b)


def test_threshold_batches_differ_in_length() -> None:
    x = np.array([[0.9, 0.1, 0.8], [0.1, 0.2, 0.3]], np.float32)
    out = threshold(x, threshold=0.5)
    assert out.mask.shape == (2, 3)
    assert isinstance(out.indices, list)
    np.testing.assert_array_equal(out.indices[0], [0, 2])
    assert out.indices[1].shape == (0,)
    t = threshold(torch.from_numpy(x), threshold=0.5)
    assert isinstance(t.mask, torch.Tensor) and t.mask.dtype == torch.bool
