"""Train-only augmentations: random_resized_crop, random_flip, color_jitter.

The kit, then each op's claims: torchvision's box rule and ``F.resized_crop``, the classic eval
transform in serve mode, flip frequencies, and torchvision v2's colour maths per step and composed.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from twinpipe.ops import InputError, OpError, ParamError
from twinpipe.ops.image._augment import color_jitter, random_flip, random_resized_crop
from twinpipe.ops.image._common import random_image
from twinpipe.ops.testing import check_op

_FACTORS = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).contiguous().numpy()


def _assert_within(got: np.ndarray, want: np.ndarray, lsb: float, msg: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype, msg
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert diff.max(initial=0) <= lsb, f"{msg}: max diff {diff.max()} at {np.unravel_index(diff.argmax(), diff.shape)}"


def _smooth_image(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    """A smooth uint8 image (never constant), so resampling differences stay small and meaningful."""
    y, x = np.mgrid[0:h, 0:w]
    chans = [127 + 100 * np.sin(x / rng.uniform(3, 9) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(3, 9)) for _ in range(c)]
    return np.clip(np.stack(chans, axis=2) + rng.uniform(-8, 8, (h, w, c)), 0, 255).astype(np.uint8)


# -- random_resized_crop -------------------------------------------------------------------------


def test_check_random_resized_crop() -> None:
    check_op(random_resized_crop)


@pytest.mark.parametrize(
    ("interpolation", "antialias"),
    [("bilinear", True), ("bilinear", False), ("bicubic", True), ("bicubic", False), ("nearest", False)],
)
def test_rrc_with_a_given_box_matches_torchvision_resized_crop(interpolation: str, antialias: bool) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    kernel = random_resized_crop.kernel_for("cpu")
    assert kernel is not None
    tv_mode = v2.InterpolationMode.NEAREST_EXACT if interpolation == "nearest" else v2.InterpolationMode(interpolation)
    for _ in range(10):
        h, w = (int(v) for v in rng.integers(8, 90, size=2))
        image = _smooth_image(rng, h, w)
        size = [int(v) for v in rng.integers(5, 70, size=2)]
        params = random_resized_crop.validate_params({"size": size, "interpolation": interpolation, "antialias": antialias})
        box = random_resized_crop.draw(rng, image, **params)  # type: ignore[misc]
        args = (box["top"], box["left"], box["height"], box["width"], size)
        want = _hwc(F.resized_crop(_chw(image), *args, interpolation=tv_mode, antialias=antialias))
        msg = f"seed={seed} image={image.shape} box={box} params={params}"
        out = np.empty(want.shape, np.uint8)
        kernel.fn(image, out=out, **params, **box)
        _assert_within(out, want, 1, msg)
        _assert_within(random_resized_crop.reference(image, **params, **box), want, 1, msg)


def test_rrc_boxes_follow_the_documented_distribution() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    image = np.zeros((h, w, 1), np.uint8)
    # every drawn box fits in this image (the largest is 452 × 452), so no draw is rejected and
    # the area fraction is uniform in [0.1, 0.5], the log aspect ratio uniform in ±log(4/3)
    params = random_resized_crop.validate_params({"size": 8, "scale": (0.1, 0.5)})
    areas, ratios = [], []
    for _ in range(3000):
        b = random_resized_crop.draw(rng, image, **params)  # type: ignore[misc]
        assert 0 <= b["top"] <= h - b["height"] and 0 <= b["left"] <= w - b["width"], f"seed={seed} {b}"
        areas.append(b["height"] * b["width"] / (h * w))
        ratios.append(b["width"] / b["height"])
    a, r = np.array(areas), np.log(np.array(ratios))
    # box sides are rounded to integers: allow that slack at the range ends
    assert a.min() >= 0.1 * (1 - 0.01) and a.max() <= 0.5 * (1 + 0.01), f"seed={seed}"
    assert r.min() >= math.log(3 / 4) - 0.01 and r.max() <= math.log(4 / 3) + 0.01, f"seed={seed}"
    # means within 5 standard errors (0.0105 and 0.015 for 3000 draws), and both ends reached
    assert abs(a.mean() - 0.3) < 0.0105, f"seed={seed} mean area {a.mean()}"
    assert abs(r.mean()) < 0.015, f"seed={seed} mean log ratio {r.mean()}"
    assert (a < 0.15).mean() > 0.08 and (a > 0.45).mean() > 0.08, f"seed={seed}"
    assert (r < -0.25).mean() > 0.03 and (r > 0.25).mean() > 0.03, f"seed={seed}"


def test_rrc_falls_back_to_the_centre_box_as_torchvision() -> None:
    # on a 1 × 50 strip no drawn box fits (h = round(sqrt(area / ratio)) >= 2): torchvision's
    # fallback clamps the aspect ratio to 4/3, giving a 1 × 1 box in the middle
    image = np.arange(50, dtype=np.uint8).reshape(1, 50, 1) + 1
    params = random_resized_crop.validate_params({"size": [2, 3]})
    tv = v2.RandomResizedCrop(size=[2, 3]).make_params([torch.zeros(1, 1, 50)])
    for seed in range(5):
        box = random_resized_crop.draw(np.random.default_rng(seed), image, **params)  # type: ignore[misc]
        assert box == tv == {"top": 0, "left": 24, "height": 1, "width": 1}
        assert (random_resized_crop(image, size=[2, 3], rng=seed) == image[0, 24, 0]).all()
    tall = np.ones((60, 2, 3), np.uint8)  # in_ratio < 3/4: full width, h = round(w / (3/4))
    box = random_resized_crop.draw(np.random.default_rng(0), tall, **params)  # type: ignore[misc]
    assert box == v2.RandomResizedCrop(size=3).make_params([torch.zeros(3, 60, 2)])
    # a ratio range this narrow rounds torchvision's fallback width to 0; ours keeps 1 pixel
    strip = np.ones((1, 16, 3), np.uint8)
    narrow = random_resized_crop.validate_params({"size": 4, "ratio": (0.44, 0.49), "scale": (0.5, 0.55)})
    assert v2.RandomResizedCrop(size=4, ratio=(0.44, 0.49), scale=(0.5, 0.55)).make_params([torch.zeros(3, 1, 16)])["width"] == 0
    assert random_resized_crop.draw(np.random.default_rng(0), strip, **narrow) == {"top": 0, "left": 7, "height": 1, "width": 1}  # type: ignore[misc]


def test_rrc_is_reproducible_under_a_seed_and_varies_across_seeds() -> None:
    seed = _seed()
    image = _smooth_image(np.random.default_rng(seed), 64, 80)
    a = random_resized_crop(image, size=24, rng=seed)
    np.testing.assert_array_equal(a, random_resized_crop(image, size=24, rng=np.random.default_rng(seed)))
    outs = {random_resized_crop(image, size=24, rng=seed + k).tobytes() for k in range(6)}
    assert len(outs) > 1, f"seed={seed}"
    batch = random_resized_crop(np.stack([image] * 4), size=24, rng=seed)
    assert batch.shape == (4, 24, 24, 3)


def test_rrc_serve_is_resize_shorter_side_then_center_crop() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for h, w in [(300, 400), (257, 211), (90, 500)]:
        image = _smooth_image(rng, h, w)
        got = random_resized_crop(image, size=224, mode="serve")
        want = _hwc(v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224)])(_chw(image)))
        _assert_within(got, want, 1, f"seed={seed} image={image.shape}")
    image = _smooth_image(rng, 50, 70)
    got = random_resized_crop(image, size=[20, 30], serve_size=40, mode="serve")
    want = _hwc(v2.Compose([v2.Resize(40, antialias=True), v2.CenterCrop([20, 30])])(_chw(image)))
    _assert_within(got, want, 1, f"seed={seed} serve_size=40")
    # default serve_size: round(min(size) * 256 / 224): 112 → 128
    got = random_resized_crop(image, size=[112, 140], mode="serve")
    want = _hwc(v2.Compose([v2.Resize(128, antialias=True), v2.CenterCrop([112, 140])])(_chw(image)))
    _assert_within(got, want, 1, f"seed={seed} default serve_size")


def test_rrc_rejects_bad_params() -> None:
    image = np.ones((4, 4, 3), np.uint8)
    with pytest.raises(ParamError, match=r"image.random_resized_crop: parameter 'scale': expected \[low, high\]"):
        random_resized_crop(image, size=4, scale=(0.5, 1.5), rng=0)
    with pytest.raises(ParamError, match=r"image.random_resized_crop: parameter 'ratio' must have a positive lower bound"):
        random_resized_crop(image, size=4, ratio=(0.0, 1.0), rng=0)
    with pytest.raises(ParamError, match=r"image.random_resized_crop: parameter 'size': expected a positive integer"):
        random_resized_crop(image, size=0, rng=0)
    with pytest.raises(OpError, match=r"image.random_resized_crop is random: in train mode pass rng="):
        random_resized_crop(image, size=4)


# -- random_flip ---------------------------------------------------------------------------------


def test_check_random_flip() -> None:
    check_op(random_flip)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.85])
def test_random_flip_frequency_is_near_p(p: float) -> None:
    seed = _seed()
    n = 4000
    image = np.array([[[1], [2]]], np.uint8)  # 1 × 2: flipped iff the first pixel is 2
    out = random_flip(np.stack([image] * n), p=p, rng=seed)
    flips = int((out[:, 0, 0, 0] == 2).sum())
    assert set(np.unique(out[:, 0, :, 0].sum(axis=1))) == {3}
    # a binomial count: within 5 standard deviations of n p
    assert abs(flips - n * p) <= 5 * math.sqrt(n * p * (1 - p)), f"seed={seed} flips={flips}"


def test_random_flip_p0_p1_vertical_and_serve() -> None:
    seed = _seed()
    image = random_image(np.random.default_rng(seed), np.uint16, max_side=9)
    batch = np.stack([image] * 50)
    np.testing.assert_array_equal(random_flip(batch, p=0.0, rng=seed), batch)
    np.testing.assert_array_equal(random_flip(batch, p=1.0, rng=seed), batch[:, :, ::-1])
    np.testing.assert_array_equal(random_flip(batch, p=1.0, axis="vertical", rng=seed), batch[:, ::-1])
    np.testing.assert_array_equal(random_flip(image, p=1.0, mode="serve"), image)
    with pytest.raises(ParamError, match=r"image.random_flip: parameter 'p': expected a finite number in \[0.0, 1.0\]"):
        random_flip(image, p=1.5, rng=0)
    with pytest.raises(ParamError, match=r"image.random_flip: parameter 'axis': expected one of 'horizontal', 'vertical'"):
        random_flip(image, axis="both", rng=0)


# -- color_jitter --------------------------------------------------------------------------------


def test_check_color_jitter() -> None:
    check_op(color_jitter)


def _jitter_both(image: np.ndarray, drawn: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The reference and the CPU kernel on given draws."""
    kernel = color_jitter.kernel_for("cpu")
    assert kernel is not None
    out = np.empty_like(image)
    kernel.fn(image, out=out, **drawn)
    return color_jitter.reference(image, **drawn), out


@pytest.mark.parametrize(
    ("step", "fn", "lo", "hi"),
    [
        (0, F.adjust_brightness, 0.0, 2.5),
        (1, F.adjust_contrast, 0.0, 2.5),
        (2, F.adjust_saturation, 0.0, 2.0),
        (3, F.adjust_hue, -0.5, 0.5),
    ],
)
@pytest.mark.parametrize("channels", [3, 1])
def test_each_jitter_step_matches_torchvision(step: int, fn: Any, lo: float, hi: float, channels: int) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    differing = total = 0
    for _ in range(10):
        image = random_image(rng, np.uint8, channels=(channels,), max_side=45)
        f = float(rng.uniform(lo, hi))
        drawn: dict[str, Any] = dict.fromkeys(_FACTORS)
        drawn.update(order=(step,), **{_FACTORS[step]: f})
        want = _hwc(fn(_chw(image), f))
        for got in _jitter_both(image, drawn):
            _assert_within(got, want, 1, f"seed={seed} step={step} factor={f} image={image.shape}")
            differing += int((got != want).sum())
            total += got.size
    # 1 LSB apart only where float32 roundings fall on either side of an integer
    assert differing <= 0.01 * total, f"seed={seed}: {differing} of {total} values differ"


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_composed_jitter_matches_torchvision_color_jitter(dtype: type) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    params = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.6, "hue": 0.2}
    tv = v2.ColorJitter(**params)
    for k in range(12):
        image = random_image(rng, dtype, channels=(3,), max_side=40)
        if image.dtype.kind == "f":
            image = np.clip(image, 0, 1)  # the documented domain of float images
        drawn = color_jitter.draw(np.random.default_rng(seed + k), image, **params)  # type: ignore[misc]
        got = color_jitter(image, **params, rng=seed + k)
        tv_params = {"fn_idx": torch.tensor(drawn.pop("order")), **drawn}
        want = _hwc(tv.transform(_chw(image), tv_params))
        _assert_within(got, want, 1 if dtype == np.uint8 else 2e-6, f"seed={seed + k} drawn={tv_params}")


def test_jitter_draws_follow_torchvision_ranges() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    image = np.ones((2, 2, 3), np.uint8)
    params = color_jitter.validate_params({"brightness": 0.3, "contrast": 1.5, "hue": 0.1})
    orders, draws = set(), []
    for _ in range(2000):
        d = color_jitter.draw(rng, image, **params)  # type: ignore[misc]
        assert sorted(d["order"]) == [0, 1, 2, 3]
        assert d["saturation_factor"] is None  # 0 disables the step
        orders.add(d["order"])
        draws.append((d["brightness_factor"], d["contrast_factor"], d["hue_factor"]))
    b, c, h = np.array(draws).T
    assert len(orders) == 24
    assert b.min() >= 0.7 and b.max() <= 1.3 and c.min() >= 0.0 and c.max() <= 2.5 and abs(h).max() <= 0.1
    assert b.min() < 0.72 and b.max() > 1.28 and h.min() < -0.09 and h.max() > 0.09, f"seed={seed}"
    assert (c == 0).sum() == 0 and abs(c.mean() - 1.25) < 0.09, f"seed={seed}"  # uniform in [0, 2.5]: 5.6σ of the mean of 2000


def test_jitter_on_gray_and_serve_and_errors() -> None:
    seed = _seed()
    gray = random_image(np.random.default_rng(seed), np.uint8, channels=(1,), max_side=20)
    sat_hue = color_jitter(gray, saturation=0.9, hue=0.4, rng=seed)
    np.testing.assert_array_equal(sat_hue, gray)  # as torchvision: nothing to saturate or rotate
    rgb = random_image(np.random.default_rng(seed), np.float32, channels=(3,))
    np.testing.assert_array_equal(color_jitter(rgb, brightness=0.5, hue=0.5, mode="serve"), rgb)
    rgba = np.ones((3, 3, 4), np.uint8)
    for kw in ({"rng": 0}, {"mode": "serve"}):
        with pytest.raises(InputError, match=r"image.color_jitter: input 'image' must be RGB or gray \(shape \[H W 3\] or \[H W 1\]\), got shape \[3, 3, 4\]"):
            color_jitter(rgba, brightness=0.5, **kw)
    with pytest.raises(ParamError, match=r"image.color_jitter: parameter 'hue': expected a finite number in \[0.0, 0.5\]"):
        color_jitter(gray, hue=0.6, rng=0)
    with pytest.raises(ParamError, match=r"image.color_jitter: parameter 'brightness': expected a finite number >= 0.0"):
        color_jitter(gray, brightness=-0.1, rng=0)


def test_jitter_uint16_saturates_at_its_max() -> None:
    # white under a hue shift: torchvision's float32 back-scale (65535.999 → 65536.0) would wrap
    image = np.full((2, 3, 3), 65535, np.uint16)
    image[0, 0] = (65535, 0, 0)
    for got in _jitter_both(image, {**dict.fromkeys(_FACTORS), "order": (3,), "hue_factor": 0.25}):
        assert got[1, 2].tolist() == [65535] * 3
        assert got[0, 0, 1] == 65535 and got[0, 0, 2] == 0  # red rotated by a quarter turn: yellow-green
