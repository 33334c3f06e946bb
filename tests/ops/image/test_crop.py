"""image.crop and image.center_crop: the kit, torchvision v2 semantics, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.image._common import random_image
from twinpipe.ops.image._crop import center_crop, center_crop_offsets, crop
from twinpipe.ops.testing import check_op


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _tv(fn, image: np.ndarray, *args) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Run a torchvision function on the CHW view of an HWC image; back to HWC NumPy."""
    out = fn(torch.from_numpy(image).permute(2, 0, 1), *args)
    return out.permute(1, 2, 0).contiguous().numpy()


def test_check_crop() -> None:
    check_op(crop)


def test_check_center_crop() -> None:
    check_op(center_crop)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_crop_matches_torchvision(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    outside = 0
    for _ in range(40):
        image = random_image(rng, dtype)
        h, w = image.shape[:2]
        top, left = int(rng.integers(-h - 3, h + 3)), int(rng.integers(-w - 3, w + 3))
        height, width = int(rng.integers(1, 2 * h + 4)), int(rng.integers(1, 2 * w + 4))
        outside += top < 0 or left < 0 or top + height > h or left + width > w
        got = crop(image, top=top, left=left, height=height, width=width)
        msg = f"seed={seed} box={(top, left, height, width)} image={image.shape}"
        assert got.dtype == image.dtype
        if top + height < 0 or left + width < 0:
            # torchvision slices image[..., 0:bottom] with a negative bottom, which Python wraps
            # (its output then has the wrong shape); a box wholly outside is all fill
            assert got.shape == (height, width, image.shape[2]), msg
            assert not got.any(), msg
            continue
        np.testing.assert_array_equal(got, _tv(F.crop, image, top, left, height, width), err_msg=msg)
    assert outside > 10  # out-of-bounds and negative boxes were exercised


def test_torchvision_crop_wraps_a_box_ending_above_the_image() -> None:
    # why the test above skips torchvision there: its output is not even height × width
    image = np.ones((10, 4, 1), np.uint8)
    assert _tv(F.crop, image, -8, 0, 3, 4).shape != (3, 4, 1)
    np.testing.assert_array_equal(crop(image, top=-8, left=0, height=3, width=4), np.zeros((3, 4, 1), np.uint8))


def test_crop_edge_cases_match_torchvision() -> None:
    rng = np.random.default_rng(_seed())
    image = rng.integers(1, 256, size=(5, 7, 3), dtype=np.uint8)  # no zeros: the fill shows
    boxes = [(0, 0, 5, 7), (-5, 0, 5, 7), (5, 7, 2, 2), (-2, -3, 9, 13), (4, 6, 1, 1), (-3, 20, 3, 3), (2, -1, 1, 1)]
    for box in boxes:
        got = crop(image, top=box[0], left=box[1], height=box[2], width=box[3])
        np.testing.assert_array_equal(got, _tv(F.crop, image, *box), err_msg=str(box))


def test_crop_on_a_batch_and_torch() -> None:
    rng = np.random.default_rng(_seed())
    batch = rng.integers(0, 256, size=(3, 6, 9, 3), dtype=np.uint8)
    got = crop(torch.from_numpy(batch), top=-1, left=4, height=4, width=8)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (3, 4, 8, 3)
    want = F.crop(torch.from_numpy(batch).permute(0, 3, 1, 2), -1, 4, 4, 8).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_center_crop_matches_torchvision(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    # every small image height against every crop height (odd/even, smaller/equal/larger), with a
    # random width and crop width, so one- and two-axis padding both occur
    for h in range(1, 9):
        for ch in range(1, 12):
            w = int(rng.integers(1, 10))
            cw = int(rng.integers(1, 13))
            image = random_image(rng, dtype, max_side=2)[:1, :1].repeat(h, 0).repeat(w, 1)
            image = image + rng.integers(1, 50, size=image.shape).astype(dtype)  # distinct, nonzero
            got = center_crop(image, size=[ch, cw])
            msg = f"seed={seed} image={image.shape} size={(ch, cw)}"
            np.testing.assert_array_equal(got, _tv(F.center_crop, image, [ch, cw]), err_msg=msg)
            np.testing.assert_array_equal(got, _tv(v2.CenterCrop((ch, cw)), image), err_msg=msg)


def test_center_crop_int_size_and_offsets() -> None:
    rng = np.random.default_rng(_seed())
    image = rng.random((10, 13, 3), dtype=np.float32) + 0.5
    np.testing.assert_array_equal(center_crop(image, size=7), _tv(F.center_crop, image, [7]))
    # the torchvision anchor uses Python's round (half to even): (10 - 5) / 2 = 2.5 -> 2, (13 - 2) / 2 = 5.5 -> 6
    assert center_crop_offsets(10, 13, 5, 2) == (int(round(2.5)), int(round(5.5))) == (2, 6)
    # a crop larger than the image pads (s - n) // 2 before, as torchvision (not round((n - s) / 2))
    assert center_crop_offsets(3, 3, 6, 3) == (-1, 0)


def test_crop_param_errors() -> None:
    image = np.ones((4, 4, 3), np.uint8)
    with pytest.raises(ParamError, match=r"image\.crop: parameter 'height': expected an integer >= 1, got 0"):
        crop(image, top=0, left=0, height=0, width=2)
    with pytest.raises(ParamError, match=r"image\.crop: parameter 'top': expected an integer"):
        crop(image, top=1.5, left=0, height=2, width=2)
    with pytest.raises(ParamError, match=r"image\.crop: parameter 'width' is required"):
        crop(image, top=0, left=0, height=2)
    with pytest.raises(ParamError, match=r"image\.center_crop: parameter 'size': expected a positive integer or \[height, width\]"):
        center_crop(image, size=[0, 3])
    with pytest.raises(ParamError, match=r"image\.center_crop: parameter 'size'"):
        center_crop(image, size=[2, 3, 4])


def test_crop_input_errors() -> None:
    with pytest.raises(InputError, match=r"image\.crop: input 'image' must have shape \[H W C\].*got shape \[4, 4\]"):
        crop(np.ones((4, 4), np.uint8), top=0, left=0, height=2, width=2)
    with pytest.raises(InputError, match=r"image\.center_crop: input 'image' has dtype int32; expected one of uint8, uint16, float32"):
        center_crop(np.ones((4, 4, 1), np.int32), size=2)
