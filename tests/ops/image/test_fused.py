"""image.resize_crop_normalize: the kit, the composition bit for bit, the torchvision chain, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.image._crop import center_crop_offsets as center_offsets
from twinpipe.ops.image._fused import _half_bits, resize_crop_normalize
from twinpipe.ops.image._resize import output_size, resize
from twinpipe.ops.testing import check_op

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _image(rng: np.random.Generator, dtype: type = np.uint8, lo: int = 8, hi: int = 200) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(lo, hi, 2))
    if dtype == np.uint8:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return rng.random((h, w, 3), dtype=np.float32)


def _chain(image: np.ndarray, size: int, crop: int | list[int], interpolation: str = "bilinear") -> np.ndarray:
    """torchvision v2's classifier transform on the CHW tensor of an HWC image; CHW NumPy out."""
    mode = v2.InterpolationMode.BILINEAR if interpolation == "bilinear" else v2.InterpolationMode.BICUBIC
    tf = v2.Compose([
        v2.Resize(size, interpolation=mode, antialias=True),
        v2.CenterCrop(crop),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])
    return tf(torch.from_numpy(image).permute(2, 0, 1).contiguous()).numpy()


def test_check_fused() -> None:
    report = check_op(resize_crop_normalize)
    assert {"cpu/uint8", "cpu/float32"} <= set(report.cases)


def test_uint8_is_the_composition_bit_for_bit() -> None:
    # the fused kernel computes only the crop, but its resized values are resize's exactly
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(40):
        image = _image(rng, lo=2, hi=120)
        size = int(rng.integers(1, 90))
        crop = [int(rng.integers(1, 110)), int(rng.integers(1, 110))]
        params = {
            "size": size,
            "crop": crop,
            "interpolation": str(rng.choice(["bilinear", "bicubic"])),
            "antialias": bool(rng.random() < 0.7),
            "dtype": str(rng.choice(["float32", "float16"])),
            "layout": str(rng.choice(["CHW", "HWC"])),
        }
        got = resize_crop_normalize(image, **params)
        np.testing.assert_array_equal(got, resize_crop_normalize.reference(image, **{**params, "mean": MEAN, "std": STD, "scale": None}), err_msg=f"seed={seed} {image.shape} {params}")
        # and the composition spelled out with the resize op itself
        if params["dtype"] == "float32" and params["layout"] == "CHW":
            resized = resize(image, size=size, fit="shorter", interpolation=params["interpolation"], antialias=params["antialias"])
            oh, ow = resized.shape[:2]
            top, left = center_offsets(oh, ow, *crop)
            box = np.zeros((*crop, 3), np.uint8)
            y0, y1, x0, x1 = max(top, 0), min(top + crop[0], oh), max(left, 0), min(left + crop[1], ow)
            box[y0 - top : y1 - top, x0 - left : x1 - left] = resized[y0:y1, x0:x1]
            want = (box.astype(np.float32) * np.float32(1 / 255) - np.float32(MEAN)) / np.float32(STD)
            np.testing.assert_array_equal(got, want.transpose(2, 0, 1), err_msg=f"seed={seed}")


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_matches_the_torchvision_chain(interpolation: str) -> None:
    # resize is within one uint8 step of torchvision's; normalising turns that step into
    # 1 / 255 / std (0.0175 for the smallest ImageNet std); everything else is the same float32
    # arithmetic, so the two agree to that plus float rounding
    tol = 1 / 255 / min(STD) + 1e-5
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(25):
        image = _image(rng, lo=20, hi=300)
        size = int(rng.integers(8, 130))
        crop = int(rng.integers(4, 150)) if rng.random() < 0.6 else [int(rng.integers(4, 150)), int(rng.integers(4, 150))]
        got = resize_crop_normalize(image, size=size, crop=crop, interpolation=interpolation)
        want = _chain(image, size, crop, interpolation)
        msg = f"seed={seed} {image.shape} size={size} crop={crop}"
        assert got.shape == want.shape, msg
        assert np.abs(got - want).max() <= tol, msg


def test_float32_input_matches_the_torchvision_chain() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(15):
        image = _image(rng, np.float32, lo=20, hi=200)
        size, crop = int(rng.integers(8, 100)), int(rng.integers(4, 120))
        got = resize_crop_normalize(image, size=size, crop=crop)
        assert np.abs(got - _chain(image, size, crop)).max() <= 1e-4 / min(STD), f"seed={seed} {image.shape} {size} {crop}"


def test_crop_larger_than_the_image_is_padded_like_torchvision() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    for crop in ([40, 20], [20, 80], [41, 81], 64):
        got = resize_crop_normalize(image, size=30, crop=crop)
        want = _chain(image, 30, crop)
        assert np.abs(got - want).max() <= 1 / 255 / min(STD) + 1e-5, f"seed={seed} crop={crop}"
        pad = -np.float32(MEAN) / np.float32(STD)  # a zero pixel, normalised
        np.testing.assert_allclose(got[:, 0, 0], pad, rtol=1e-6)


def test_center_offsets_match_torchvision() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(200):
        h, w, ch, cw = (int(v) for v in rng.integers(1, 40, 4))
        index = torch.arange(1, h * w + 1, dtype=torch.int32).reshape(1, h, w)  # 0 only where padded
        cropped = F.center_crop(index, [ch, cw])[0].numpy()
        top, left = center_offsets(h, w, ch, cw)
        ys, xs = np.arange(ch)[:, None] + top, np.arange(cw)[None, :] + left
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        want = np.where(inside, ys * w + xs + 1, 0)
        np.testing.assert_array_equal(cropped, want, err_msg=f"seed={seed} {(h, w)} crop {(ch, cw)}")


def test_layouts_dtypes_and_params() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    image = _image(rng)
    chw = resize_crop_normalize(image, size=64, crop=[48, 40])
    assert chw.shape == (3, 48, 40) and chw.dtype == np.float32
    np.testing.assert_array_equal(resize_crop_normalize(image, size=64, crop=[48, 40], layout="HWC"), chw.transpose(1, 2, 0))
    half = resize_crop_normalize(image, size=64, crop=[48, 40], dtype="float16")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, chw.astype(np.float16))
    # scale, one mean / std for all channels
    plain = resize_crop_normalize(image, size=64, crop=[48, 40], mean=0.0, std=1.0, scale=1.0)
    oh, ow = output_size(*image.shape[:2], 64, "shorter")
    top, left = center_offsets(oh, ow, 48, 40)
    resized = resize(image, size=64, fit="shorter")
    np.testing.assert_array_equal(plain, resized[top : top + 48, left : left + 40].transpose(2, 0, 1).astype(np.float32))


def test_half_bits_match_numpy() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    edges = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x477FE000, 0x477FF000, 0x477FEFFF, 0x47800000, 0x38800000, 0x387FFFFF, 0x33800000, 0x33000000, 0x33000001, 0x32FFFFFF, 1]
    x = np.concatenate([bits, np.array(edges, np.uint32)]).view(np.float32)
    x = np.concatenate([x, (rng.standard_normal(200_000) * 10.0 ** rng.integers(-8, 6, 200_000)).astype(np.float32)])
    x = x[~np.isnan(x)]
    got = np.empty(x.shape, np.uint16)
    _half_bits(x, got)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got, x.astype(np.float16).view(np.uint16), err_msg=f"seed={seed}")


def test_torch_input() -> None:
    image = _image(np.random.default_rng(_seed()))
    got = resize_crop_normalize(torch.from_numpy(image), size=50, crop=32)
    assert isinstance(got, torch.Tensor) and got.shape == (3, 32, 32)
    np.testing.assert_array_equal(got.numpy(), resize_crop_normalize(image, size=50, crop=32))


def test_bad_params() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    cases = [
        ({"size": 0}, "parameter 'size': expected an integer >= 1"),
        ({"crop": [4, 0]}, "parameter 'crop'"),
        ({"std": [0.2, 0.0, 0.2]}, "parameter 'std': expected a list of 1 to any positive numbers"),
        ({"dtype": "float64"}, "parameter 'dtype': expected one of 'float32', 'float16'"),
        ({"layout": "NCHW"}, "parameter 'layout': expected one of 'CHW', 'HWC'"),
        ({"interpolation": "area"}, "parameter 'interpolation': expected one of 'bilinear', 'bicubic'"),
    ]
    for params, text in cases:
        with pytest.raises(ParamError, match="image.resize_crop_normalize") as info:
            resize_crop_normalize(image, **params)
        assert text in str(info.value), (params, str(info.value))
    with pytest.raises(InputError, match=r"image.resize_crop_normalize: parameter 'mean' has 2 values but the image has 3 channels; expected 1 value or 3"):
        resize_crop_normalize(image, mean=[0.5, 0.5])
    with pytest.raises(InputError, match=r"parameter 'std' has 3 values but the image has 1 channels"):
        resize_crop_normalize(np.zeros((8, 8, 1), np.uint8), mean=0.5)


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match=r"image.resize_crop_normalize: input 'image' has dtype uint16; expected one of uint8, float32"):
        resize_crop_normalize(np.zeros((8, 8, 3), np.uint16))
    with pytest.raises(InputError, match=r"image.resize_crop_normalize: input 'image' must have shape \[H W C\]"):
        resize_crop_normalize(np.zeros((8, 8), np.uint8))


def test_splitting_rows_over_threads_gives_the_same_bits() -> None:
    from twinpipe.ops import get_num_threads, set_num_threads

    rng = np.random.default_rng()
    img = rng.integers(0, 256, (347, 520, 3), dtype=np.uint8)
    before = get_num_threads()
    try:
        set_num_threads(1)
        one = resize_crop_normalize(img, size=256, crop=224)
        set_num_threads(2)
        two = resize_crop_normalize(img, size=256, crop=224)
    finally:
        set_num_threads(before)
    np.testing.assert_array_equal(one, two)
