"""image.normalize, image.to_dtype, image.layout: the kit, torchvision v2 semantics, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.image._common import random_image
from twinpipe.ops.image._convert import layout, normalize, to_dtype
from twinpipe.ops.testing import check_op

# the kit poisons float16 outputs with -1e30, which NumPy reports as an overflow
_kit_f16 = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
_TORCH = {np.dtype(k): v for k, v in [(np.uint8, torch.uint8), (np.uint16, torch.uint16), (np.float16, torch.float16), (np.float32, torch.float32), (np.float64, torch.float64)]}
_OUT = ["uint8", "uint16", "float16", "float32", "float64"]


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).contiguous().numpy()


@_kit_f16
@pytest.mark.parametrize("op", [normalize, to_dtype, layout], ids=lambda op: op.name)
def test_check_op(op) -> None:  # type: ignore[no-untyped-def]
    check_op(op)


# -- normalize -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_normalize_matches_torchvision(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(10):
        image = random_image(rng, dtype)
        c = image.shape[2]
        mean = [float(v) for v in rng.uniform(0, 1, size=c if rng.random() < 0.7 else 1)]
        std = [float(v) for v in rng.uniform(0.05, 1, size=c if rng.random() < 0.7 else 1)]
        got = normalize(image, mean=mean, std=std)
        pipeline = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
        want = _hwc(pipeline(tv_tensors.Image(_chw(image))))
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"seed={seed} {image.shape} mean={mean} std={std}")


def test_normalize_is_the_exact_float32_formula() -> None:
    # fused ops' references compose with this exact form, so the kernel must be bit-exact
    seed = _seed()
    rng = np.random.default_rng(seed)
    for dtype, default in [(np.uint8, 1 / 255), (np.uint16, 1 / 65535), (np.float32, 1.0)]:
        image = random_image(rng, dtype)
        mean, std = [0.485, 0.456, 0.406][: image.shape[2]], [0.229, 0.224, 0.225][: image.shape[2]]
        if image.shape[2] == 4:
            mean, std = [0.5], [0.25]
        for scale in (None, 0.7 * default):
            k = np.float32(default if scale is None else scale)
            want = (image.astype(np.float32) * k - np.float32(mean)) / np.float32(std)
            got = normalize(image, mean=mean, std=std, scale=scale)
            np.testing.assert_array_equal(got, want, err_msg=f"seed={seed} {dtype} scale={scale}")
            half = normalize(image, mean=mean, std=std, scale=scale, dtype="float16")
            assert half.dtype == np.float16
            np.testing.assert_array_equal(half, want.astype(np.float16))


def test_normalize_batches() -> None:
    rng = np.random.default_rng(_seed())
    batch = rng.integers(0, 256, size=(3, 5, 4, 3), dtype=np.uint8)
    got = normalize(torch.from_numpy(batch), mean=[0.5, 0.4, 0.3], std=[0.2])
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and tuple(got.shape) == (3, 5, 4, 3)
    want = F.normalize(F.to_dtype(torch.from_numpy(batch).permute(0, 3, 1, 2), torch.float32, scale=True), [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    np.testing.assert_allclose(got.numpy(), want.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)


def test_normalize_channel_mismatch() -> None:
    image = np.ones((4, 5, 3), np.uint8)
    expected = r"image\.normalize: parameter 'mean' has 2 values but the image has 3 channels; expected 1 value or 3 \(one per channel\)"
    with pytest.raises(InputError, match=expected):
        normalize(image, mean=[0.1, 0.2], std=[0.5])
    with pytest.raises(InputError, match=expected):
        normalize(np.stack([image, image]), mean=[0.1, 0.2], std=[0.5])  # a dense batch
    with pytest.raises(InputError, match=r"image\.normalize: parameter 'std' has 3 values but the image has 1 channels"):
        normalize([image[..., :1]], mean=[0.1], std=[0.2, 0.3, 0.4])  # a ragged batch
    with pytest.raises(InputError, match=expected):
        normalize.reference(image, mean=(0.1, 0.2), std=(0.5,), scale=None, dtype="float32")


def test_normalize_param_errors() -> None:
    image = np.ones((4, 5, 3), np.uint8)
    with pytest.raises(ParamError, match=r"image\.normalize: parameters 'mean' \(3 values\) and 'std' \(2 values\) must have the same length"):
        normalize(image, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5])
    with pytest.raises(ParamError, match=r"image\.normalize: parameter 'std': expected a list of 1 to any positive numbers, got \[0.5, 0\]"):
        normalize(image, mean=[0.1], std=[0.5, 0])
    with pytest.raises(ParamError, match=r"image\.normalize: parameter 'dtype': expected one of 'float32', 'float16', got 'float64'"):
        normalize(image, mean=[0.1], std=[0.5], dtype="float64")
    with pytest.raises(ParamError, match=r"image\.normalize: parameter 'mean' is required"):
        normalize(image, std=[0.5])
    with pytest.raises(InputError, match=r"image\.normalize: input 'image' must have shape \[H W C\]"):
        normalize(np.ones((4, 5), np.uint8), mean=[0.1], std=[0.5])


# -- to_dtype --------------------------------------------------------------------------------


def _tv_to_dtype(image: np.ndarray, dtype: str, scale: bool) -> np.ndarray:
    return _hwc(F.to_dtype(_chw(image), _TORCH[np.dtype(dtype)], scale=scale))


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("src", [np.uint8, np.uint16, np.float32])
def test_to_dtype_matches_torchvision(src: type, scale: bool) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for out in _OUT:
        for _ in range(3):
            image = random_image(rng, src)
            if image.dtype.kind == "f":
                # scaled conversion is defined on [0, 1] (outside it, here saturates, torch wraps)
                image = np.clip(image, 0, 1) if scale else image
                image.flat[:: max(1, image.size // 4)] = 1.0  # the top of the range, exactly
                image.flat[1 :: max(2, image.size // 3)] = 0.0
            got = to_dtype(image, dtype=out, scale=scale)
            want = _tv_to_dtype(image, out, scale)
            msg = f"seed={seed} {image.dtype}->{out} scale={scale} {image.shape}"
            assert got.dtype == np.dtype(out) and got.shape == image.shape, msg
            if image.dtype == np.float32 and out == "uint16" and scale:
                # torchvision: 1.0 * float32(65535.999) = 65536, which wraps to 0; here it saturates
                np.testing.assert_array_equal(got[image == 1], 65535, err_msg=msg)
                want[image == 1] = 65535
            if image.dtype == np.uint16 and out == "uint8" and not scale:
                want = np.minimum(image, 255).astype(np.uint8)  # torchvision wraps; here it saturates
            if image.dtype == np.uint16 and out == "float16" and scale:
                # torchvision goes through float16 (65520 and up: inf); here float32 then one rounding
                small = image < 65520
                np.testing.assert_allclose(got[small], want[small], rtol=2**-10, atol=0, err_msg=msg)
                assert np.isfinite(got).all() and (got <= 1).all(), msg
                continue
            np.testing.assert_array_equal(got, want, err_msg=msg)


@pytest.mark.parametrize("out", ["uint8", "uint16"])
def test_to_dtype_saturates_floats_outside_the_range(out: str) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    hi = np.iinfo(out).max
    image = rng.uniform(-0.5, 1.5, size=(9, 11, 3)).astype(np.float32)
    image[0, 0] = [np.nan, np.inf, -np.inf]
    got = to_dtype(image, dtype=out)
    # torchvision on the input clamped to [0, 1] (NaN as 0): what saturation means, scaled
    clamped = np.clip(np.nan_to_num(image, nan=0.0), 0, 1)
    want = _tv_to_dtype(clamped, out, True)
    want[clamped == 1] = hi  # see test_to_dtype_matches_torchvision: 1.0 is the top value
    np.testing.assert_array_equal(got, want, err_msg=f"seed={seed}")
    assert (got[image >= 1] == hi).all() and (got[image <= 0] == 0).all() and got[0, 0, 0] == 0
    # unscaled: truncate toward zero, then saturate
    wide = rng.uniform(-300, hi + 300, size=(7, 5, 3)).astype(np.float32)
    wide[0, 0] = [np.nan, -0.7, hi + 0.5]
    got = to_dtype(wide, dtype=out, scale=False)
    want = F.to_dtype(torch.from_numpy(np.clip(np.nan_to_num(wide, nan=0.0), 0, hi)), _TORCH[np.dtype(out)], scale=False)
    np.testing.assert_array_equal(got, want.numpy(), err_msg=f"seed={seed}")
    assert list(got[0, 0]) == [0, 0, hi]


def test_to_dtype_bit_shifts_and_identity() -> None:
    rng = np.random.default_rng(_seed())
    u8 = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    u16 = rng.integers(0, 65536, size=(3, 4, 3), dtype=np.uint16)
    np.testing.assert_array_equal(to_dtype(u8, dtype="uint16"), u8.astype(np.uint16) << 8)
    np.testing.assert_array_equal(to_dtype(u16, dtype="uint8"), (u16 >> 8).astype(np.uint8))
    same = to_dtype(u16, dtype="uint16")
    np.testing.assert_array_equal(same, u16)
    assert not np.shares_memory(same, u16)


def test_to_dtype_float16_overflow_is_inf() -> None:
    image = np.array([[[70000.0, -70000.0, 0.5]]], np.float32)
    got = to_dtype(image, dtype="float16")
    np.testing.assert_array_equal(got, _tv_to_dtype(image, "float16", True))
    assert list(got[0, 0]) == [np.inf, -np.inf, 0.5]


def test_to_dtype_param_errors() -> None:
    image = np.ones((2, 2, 1), np.uint8)
    with pytest.raises(ParamError, match=r"image\.to_dtype: parameter 'dtype': expected one of 'uint8', 'uint16', 'float16', 'float32', 'float64', got 'int8'"):
        to_dtype(image, dtype="int8")
    with pytest.raises(ParamError, match=r"image\.to_dtype: parameter 'scale': expected true or false, got 1"):
        to_dtype(image, dtype="uint8", scale=1)
    with pytest.raises(InputError, match=r"image\.to_dtype: input 'image' has dtype float64; expected one of uint8, uint16, float32"):
        to_dtype(np.ones((2, 2, 1)), dtype="uint8")


# -- layout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32, np.float64])
def test_layout_transposes(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    image = (rng.random((7, 5, 3)) * 200 + 1).astype(dtype)
    chw = layout(image, to="CHW")
    assert chw.shape == (3, 7, 5) and chw.flags.c_contiguous and chw.dtype == image.dtype
    np.testing.assert_array_equal(chw, np.transpose(image, (2, 0, 1)))
    back = layout(chw, to="HWC")
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, image)


def test_layout_batches_and_views() -> None:
    rng = np.random.default_rng(_seed())
    batch = rng.integers(0, 256, size=(2, 6, 4, 3), dtype=np.uint8)
    got = layout(torch.from_numpy(batch))
    assert isinstance(got, torch.Tensor) and got.is_contiguous()
    torch.testing.assert_close(got, torch.from_numpy(batch).permute(0, 3, 1, 2), rtol=0, atol=0)
    # a non-contiguous view in (a flipped, strided slice) gives the same as a copy
    view = batch[1, ::-1, ::2]
    np.testing.assert_array_equal(layout(view), np.transpose(view.copy(), (2, 0, 1)))


def test_layout_errors() -> None:
    with pytest.raises(ParamError, match=r"image\.layout: parameter 'to': expected one of 'CHW', 'HWC', got 'NCHW'"):
        layout(np.ones((2, 2, 3), np.uint8), to="NCHW")
    with pytest.raises(InputError, match=r"image\.layout: input 'image' must have shape \[A B C\] \(rank 3, or 4 for a batch\), got shape \[2, 2\]"):
        layout(np.ones((2, 2), np.uint8))
    with pytest.raises(InputError, match=r"image\.layout: input 'image' has dtype int32; expected one of uint8, uint16, float16, float32, float64"):
        layout(np.ones((2, 2, 3), np.int32))
