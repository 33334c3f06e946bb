"""``image.decode`` onto the GPU (``BoundOp.on_gpu``): nvJPEG where torch has a GPU, else (and for
PNG, BMP, WebP) the CPU decoder and an upload — the simulator's device arrays here."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from numba import cuda

from twinpipe.ops import DecodeError, InputError, image
from twinpipe.ops._device import is_device_array, to_host_copy
from twinpipe.ops.image._decode import with_exif_orientation
from twinpipe.ops.testing import check_op
from twinpipe.pipelines import asset_path

pytestmark = pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device and no simulator")
NVJPEG = torch.cuda.is_available()


def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


def _assert_decodes_agree(got: np.ndarray, want: np.ndarray, jpeg: bool) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype == np.uint8
    if jpeg and NVJPEG:  # nvJPEG upsamples chroma its own way: torchvision's bound for its nvJPEG path
        assert np.abs(got.astype(np.float64) - want).mean() < 2
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("color", ["rgb", "bgr", "gray"])
def test_decode_on_the_gpu_gives_the_cpu_decode_upright(color: str) -> None:
    rng = _rng()
    img = cv2.GaussianBlur(rng.integers(0, 256, (int(rng.integers(9, 40)), int(rng.integers(9, 40)), 3), dtype=np.uint8), (3, 3), 0)
    orientation = int(rng.integers(1, 9))
    jpeg = with_exif_orientation(cv2.imencode(".jpg", img)[1].tobytes(), orientation)
    png = cv2.imencode(".png", img)[1].tobytes()
    bound = image.decode.bind(color=color)
    one = bound.on_gpu(jpeg)
    assert is_device_array(one) and not isinstance(one, np.ndarray)
    _assert_decodes_agree(to_host_copy(one), image.decode(jpeg, color=color), jpeg=True)
    both = bound.on_gpu(np.array([jpeg, png], dtype=object))
    assert isinstance(both, list) and len(both) == 2
    _assert_decodes_agree(to_host_copy(both[0]), image.decode(jpeg, color=color), jpeg=True)
    _assert_decodes_agree(to_host_copy(both[1]), image.decode(png, color=color), jpeg=False)


@pytest.mark.skipif(NVJPEG, reason="nvJPEG differs from the reference by more than the op's per-pixel tolerance near colour edges")
def test_the_kit_checks_the_gpu_decoder_against_the_reference() -> None:
    """Without nvJPEG the GPU path is the CPU decoder and an upload: within the op's tolerance."""
    report = check_op(image.decode, devices=("cuda",), cases=2)
    assert report.cases.get("cuda/object") == 2, report


def test_a_bad_item_in_a_gpu_decode_batch_is_named() -> None:
    good = cv2.imencode(".png", np.full((4, 5, 3), 7, np.uint8))[1].tobytes()
    with pytest.raises(DecodeError, match=r"image.decode: truncated JPEG: .* \(batch item 1 of 2\)"):
        image.decode.bind().on_gpu(np.array([good, b"\xff\xd8\xff\xe0junk"], dtype=object))
    with pytest.raises(DecodeError, match="image.decode: empty input"):
        image.decode.bind().on_gpu(b"")
    with pytest.raises(InputError, match=r"image.decode reads its input on the host \(its GPU path returns GPU arrays: BoundOp.on_gpu\)"):
        image.decode(cuda.to_device(np.frombuffer(good, np.uint8)))  # the file's bytes on the GPU


@pytest.mark.skipif(not NVJPEG, reason="nvJPEG needs torch with a CUDA GPU")
def test_nvjpeg_decodes_the_photos_within_the_chroma_upsampling_bound() -> None:
    photos = [asset_path(n).read_bytes() for n in ("coffee.jpg", "chelsea.jpg", "coffee_exif6.jpg")]
    got = image.decode.bind().on_gpu(np.array(photos, dtype=object))
    for g, photo in zip(got, photos):
        assert isinstance(g, torch.Tensor) and g.is_cuda
        _assert_decodes_agree(g.cpu().numpy(), image.decode(photo), jpeg=True)
