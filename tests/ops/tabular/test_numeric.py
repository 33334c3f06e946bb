"""Numeric tabular ops against NumPy and torch: standardize, min-max, log1p, clip, bucketize, fill."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.tabular import bucketize, clip, fill_missing, log1p, min_max_scale, standardize

OPS = [standardize, min_max_scale, log1p, clip, bucketize, fill_missing]


def _data(rng: np.random.Generator, n: int = 5000, dtype: Any = np.float32) -> np.ndarray:
    """Heavy-tailed values of mixed scale, with NaN, ±inf, zeros and -1 sprinkled in."""
    x = rng.standard_normal(n) * np.exp(rng.standard_normal(n) * 2) + rng.normal(0, 30)
    special = rng.random(n) < 0.05
    x[special] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0, -0.0], special.sum())
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standardize_is_torch_z_score_rounded_once(dtype: Any) -> None:
    rng = np.random.default_rng()
    x = _data(rng, dtype=dtype)
    mean, std = float(rng.normal(0, 10)), float(rng.uniform(0.1, 50))
    got = standardize(x, mean=mean, std=std)
    assert got.dtype == dtype and got.shape == x.shape
    # torch in float64, rounded once: the documented computation, bit for bit
    want = ((torch.from_numpy(x).double() - mean) / std).to(torch.from_numpy(np.empty(0, dtype)).dtype).numpy()
    np.testing.assert_array_equal(got, want)
    # torch in the input's own precision differs by its roundings of x - mean (cancellation)
    native = ((torch.from_numpy(x) - mean) / std).numpy()
    finite = np.isfinite(x)
    bound = 2 * np.finfo(dtype).eps * (np.abs(x[finite]).astype(np.float64) + abs(mean)) / std
    assert np.all(np.abs(got[finite].astype(np.float64) - native[finite]) <= bound)
    np.testing.assert_array_equal(got[~finite], native[~finite])


def test_standardize_zero_std_is_one_and_ints_give_float32() -> None:
    x = np.array([3, -7, 12], np.int64)
    got = standardize(x, mean=2.0, std=0.0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [1, -9, 10])
    t = standardize(torch.tensor([1.0, 2.0, np.nan]), mean=1.0, std=2.0)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), [0.0, 0.5, np.nan])


@pytest.mark.parametrize("clip_to_unit", [False, True])
def test_min_max_scale(clip_to_unit: bool) -> None:
    rng = np.random.default_rng()
    x = _data(rng, dtype=np.float64)
    lo, hi = float(rng.normal(0, 5)), float(rng.normal(30, 5))
    got = min_max_scale(x, min=lo, max=hi, clip=clip_to_unit)
    want = (torch.from_numpy(x) - lo) / (hi - lo)
    if clip_to_unit:
        want = torch.clamp(want, 0, 1)  # keeps NaN, as documented
    np.testing.assert_array_equal(got, want.numpy())
    np.testing.assert_array_equal(min_max_scale(np.array([4.0, 5.0]), min=4.0, max=4.0), [0.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_is_numpy_log1p_in_float64(dtype: Any) -> None:
    rng = np.random.default_rng()
    x = _data(rng, dtype=dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.log1p(x.astype(np.float64))
    got = log1p(x)
    assert got.dtype == dtype
    # libm's log1p (the kernel) and NumPy's may differ in the last bit of the float64 result
    np.testing.assert_allclose(got, want.astype(dtype), rtol=np.finfo(dtype).eps, atol=0, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    t = torch.log1p(torch.from_numpy(x)).numpy()  # torch in the input's precision: within an ulp
    np.testing.assert_allclose(log1p(x), t, rtol=np.finfo(dtype).eps, equal_nan=True)
    assert np.isneginf(log1p(np.array([-1.0])))[0] and np.isnan(log1p(np.array([-2.0])))[0]


def test_signed_log1p_is_symmetric_and_total() -> None:
    rng = np.random.default_rng()
    x = _data(rng, dtype=np.float64)
    got = log1p(x, signed=True)
    want = torch.sign(torch.from_numpy(x)) * torch.log1p(torch.from_numpy(x).abs())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-15, equal_nan=True)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(log1p(-x[finite], signed=True), -got[finite])
    assert np.signbit(log1p(np.array([-0.0]), signed=True)[0])


def test_clip_matches_numpy_and_torch_clamp() -> None:
    rng = np.random.default_rng()
    x = _data(rng, dtype=np.float64)
    lo, hi = sorted(rng.normal(0, 10, 2).tolist())
    np.testing.assert_array_equal(clip(x, min=lo, max=hi), np.clip(x, lo, hi))
    np.testing.assert_array_equal(clip(x, min=lo, max=hi), torch.clamp(torch.from_numpy(x), lo, hi).numpy())
    np.testing.assert_array_equal(clip(x, max=hi), np.minimum(x, hi))
    np.testing.assert_array_equal(clip(x, min=lo), np.maximum(x, lo))
    f = clip(np.array([0.05, 1.0], np.float32), min=0.1)
    assert f.dtype == np.float32 and f[0] == np.float32(0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_bucketize_is_digitize_and_torch_bucketize_right(dtype: Any) -> None:
    rng = np.random.default_rng()
    b = np.unique(rng.normal(0, 20, int(rng.integers(1, 30))).round(1))
    x = _data(rng).round(1) if np.dtype(dtype).kind == "f" else rng.integers(-60, 60, 5000)
    x = x.astype(dtype)
    x[: len(b)] = b.astype(dtype)  # values equal to a boundary: ties go to the bucket above
    got = bucketize(x, boundaries=b.tolist())
    assert got.dtype == np.int64
    xf = x.astype(np.float64)
    np.testing.assert_array_equal(got, np.digitize(xf, b))
    np.testing.assert_array_equal(got, torch.bucketize(torch.from_numpy(xf), torch.from_numpy(b), right=True).numpy())


def test_bucketize_nan_inf_and_missing_bucket() -> None:
    b = [0.0, 1.0, 2.0]
    x = np.array([-np.inf, -1, 0, 0.5, 1, 2, 3, np.inf, np.nan])
    assert bucketize(x, boundaries=b).tolist() == [0, 0, 1, 1, 2, 3, 3, 3, 3]
    assert bucketize(x, boundaries=b, missing_bucket=True).tolist() == [0, 0, 1, 1, 2, 3, 3, 3, 4]
    assert bucketize(x, boundaries=[]).tolist() == [0] * 9
    # a float32 value just below a float64 boundary is compared exactly, not rounded to it
    below = np.nextafter(np.float32(0.1), np.float32(0))
    assert bucketize(np.array([below, np.float32(0.1)]), boundaries=[0.1]).tolist() == [0, 1]


def test_fill_missing_floats_and_strings() -> None:
    x = np.array([1.5, np.nan, np.inf, -0.0], np.float32)
    got = fill_missing(x, value=0.25)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [1.5, 0.25, np.inf, -0.0])
    s = np.empty(6, object)
    s[:] = [b"de", None, b"", "ü", b"\xff", bytearray(b"x")]
    out = fill_missing(s, value="__missing__")
    assert out.dtype == object and out.tolist() == [b"de", b"__missing__", b"__missing__", "ü".encode(), b"\xff", b"x"]
    assert fill_missing(s.reshape(2, 3), value="?").shape == (2, 3)
    with pytest.raises(InputError, match="tabular.fill_missing: the input holds strings but the fill value is the number"):
        fill_missing(s, value=1.0)
    with pytest.raises(InputError, match="tabular.fill_missing: the input holds float32 numbers but the fill value is the string"):
        fill_missing(x, value="a")
    with pytest.raises(InputError, match="tabular.fill_missing: input 'x' has dtype int64"):
        fill_missing(np.arange(3), value=1.0)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_empty_columns_give_empty_outputs(op: Any) -> None:
    table: dict[str, dict[str, Any]] = {
        "tabular.standardize": {"mean": 1.0, "std": 2.0}, "tabular.min_max_scale": {"min": 0.0, "max": 1.0},
        "tabular.log1p": {}, "tabular.clip": {"min": 0.0}, "tabular.bucketize": {"boundaries": [1.0]},
        "tabular.fill_missing": {"value": 0.0},
    }
    params = table[op.name]
    for shape in [(0,), (0, 4), (3, 0)]:
        got = op(np.empty(shape, np.float32), **params)
        assert got.shape == shape
        t = op(torch.empty(shape), **params)
        assert isinstance(t, torch.Tensor) and tuple(t.shape) == shape


def test_parameter_errors_name_the_op_and_what_was_expected() -> None:
    x = np.ones(3)
    with pytest.raises(ParamError, match=r"tabular.standardize: give 'mean' and 'std', or 'stats' and 'feature' \(missing 'std'\)"):
        standardize(x, mean=1.0)
    with pytest.raises(ParamError, match="tabular.standardize: parameter 'std'"):
        standardize(x, mean=1.0, std=-1.0)
    with pytest.raises(ParamError, match="tabular.min_max_scale: min .* must not exceed max"):
        min_max_scale(x, min=2.0, max=1.0)
    with pytest.raises(ParamError, match="tabular.clip: give 'min', 'max' or both"):
        clip(x)
    with pytest.raises(ParamError, match="tabular.bucketize: boundaries must be strictly increasing"):
        bucketize(x, boundaries=[1.0, 1.0])
    with pytest.raises(ParamError, match="tabular.bucketize: parameter 'boundaries'"):
        bucketize(x, boundaries=[1.0, float("nan")])
    with pytest.raises(ParamError, match="tabular.fill_missing: give 'value'"):
        fill_missing(x)
    with pytest.raises(InputError, match="tabular.log1p: input 'x' has dtype bool"):
        log1p(np.ones(3, bool))
    with pytest.raises(InputError, match="tabular.log1p: input 'x' takes numbers, got bytes"):
        log1p(b"1.0")


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_passes_the_op_testing_kit(op: Any, kit: Any) -> None:
    report = kit(op)
    assert report.cases.get("cpu/float32") == 12 and "dispatch/float32" in report.checks
