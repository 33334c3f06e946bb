"""The image ops' CUDA kernels against their NumPy references and CPU twins — on the GPU when
there is one, else in Numba's CUDA simulator (tests/conftest.py), on small random images — and the
GPU dispatch: GPU arrays in, GPU arrays of the same kind out."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from numba import cuda

from twinpipe.ops import InputError, Op, OpError, image
from twinpipe.ops.testing import OpCheckError, check_op

pytestmark = pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device and no simulator")


def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


@pytest.mark.parametrize("op", [image.normalize, image.to_dtype, image.layout, image.flip, image.crop, image.center_crop, image.pad,
                                image.convert_color, image.resize, image.resize_crop_normalize, image.letterbox],
                         ids=lambda op: op.name)
def test_the_cuda_kernel_matches_the_reference_for_every_dtype(op: Op) -> None:
    """The kit runs the kernel on device copies (outputs poisoned twice, inputs checked untouched)
    and through the op with device arrays, against the NumPy reference within the op's tolerance."""
    report = check_op(op, devices=("cuda",), cases=1)  # the simulator is slow: one fresh case per dtype a run
    dtypes = [d.name for d in op.inputs[0].dtypes]
    assert all(report.cases.get(f"cuda/{d}") == 1 for d in dtypes), report


def test_gpu_arrays_in_give_gpu_arrays_out_equal_to_the_cpu_twin() -> None:
    rng = _rng()
    x = rng.integers(0, 256, (int(rng.integers(3, 12)), int(rng.integers(3, 40)), 3), dtype=np.uint8)
    on_gpu = cuda.to_device(x)
    chw = image.layout(image.normalize(on_gpu, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]))
    assert type(chw) is type(on_gpu)  # the caller's kind of GPU array
    want = image.layout(image.normalize(x, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]))
    got = chw.copy_to_host()
    assert got.shape == want.shape == (3, *x.shape[:2])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(image.flip(on_gpu, axis="both").copy_to_host(), x[::-1, ::-1])


def test_a_dense_gpu_batch_runs_in_one_call_and_equals_the_samples_on_the_cpu() -> None:
    rng = _rng()
    h, w = int(rng.integers(2, 9)), int(rng.integers(2, 40))
    batch = rng.integers(0, 65536, (3, h, w, 3), dtype=np.uint16)
    got = image.pad(cuda.to_device(batch), padding=[1, 2, 3, 0], padding_mode="reflect")
    assert got.shape == (3, h + 3, w + 3, 3)
    want = np.stack([image.pad(x, padding=[1, 2, 3, 0], padding_mode="reflect") for x in batch])
    np.testing.assert_array_equal(got.copy_to_host(), want)
    chw = image.layout(image.normalize(cuda.to_device(batch), mean=[0.5], std=[0.5], dtype="float16"))
    assert chw.shape == (3, 3, h, w)
    want16 = image.layout(image.normalize(batch, mean=[0.5], std=[0.5], dtype="float16"))
    np.testing.assert_allclose(chw.copy_to_host().astype(np.float32), want16.astype(np.float32), rtol=0,
                               atol=image.normalize.tolerance["float16"])  # a GPU may contract to FMA


def test_a_gpu_batch_resizes_bit_exactly_as_the_cpu_in_every_filter() -> None:
    """uint8 resampling is the CPU's fixed point on the GPU too: equal, not close."""
    rng = _rng()
    batch = rng.integers(0, 256, (2, int(rng.integers(5, 30)), int(rng.integers(5, 30)), 3), dtype=np.uint8)
    on_gpu = cuda.to_device(batch)
    for interpolation in ("nearest", "bilinear", "bicubic", "area"):
        size = [int(rng.integers(2, 24)), int(rng.integers(2, 24))]
        got = image.resize(on_gpu, size=size, interpolation=interpolation).copy_to_host()
        np.testing.assert_array_equal(got, image.resize(batch, size=size, interpolation=interpolation), err_msg=interpolation)
    fused = image.resize_crop_normalize(on_gpu, size=7, crop=[5, 6], dtype="float16")
    assert fused.shape == (2, 3, 5, 6)
    want16 = image.resize_crop_normalize(batch, size=7, crop=[5, 6], dtype="float16")
    np.testing.assert_allclose(fused.copy_to_host().astype(np.float32), want16.astype(np.float32), rtol=0,
                               atol=image.resize_crop_normalize.tolerance["float16"][0])  # a GPU may contract to FMA
    boxed, scale, offset = image.letterbox(on_gpu, size=[9, 7], fill=[1, 2, 3])
    want = image.letterbox(batch, size=[9, 7], fill=[1, 2, 3])
    np.testing.assert_array_equal(boxed.copy_to_host(), want.image)
    np.testing.assert_array_equal(scale.copy_to_host(), want.scale)
    np.testing.assert_array_equal(offset.copy_to_host(), want.offset)


def test_a_ragged_gpu_batch_of_different_sizes_resizes_as_each_image_alone() -> None:
    """The batched ("varshape") kernels: images of different sizes in one batch, each resampled
    with its own tables, bit-exact for uint8; the fused op and the letterbox give one dense batch."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    items = [rng.integers(0, 256, (int(rng.integers(3, 20)), int(rng.integers(3, 20)), 3), dtype=np.uint8) for _ in range(3)]
    items.append(items[0].copy())  # a size twice (and three images: the kernels pad the batch to four)
    where = f"seed {seed}, sizes {[x.shape for x in items]}"
    on_gpu = [cuda.to_device(x) for x in items]
    wide = np.repeat(items[1], 2, axis=1)
    on_gpu[1] = cuda.to_device(wide)[:, ::2]  # a strided view among contiguous images
    for interpolation in ("nearest", "bilinear", "bicubic", "area"):
        got = image.resize(on_gpu, size=7, fit="shorter", interpolation=interpolation)
        want = [image.resize(x, size=7, fit="shorter", interpolation=interpolation) for x in items]
        # outputs of different sizes stay a list; where every image gives the same size, one dense batch
        assert isinstance(got, list) if len({w.shape for w in want}) > 1 else got.shape == (4, *want[0].shape), where
        for i, w in enumerate(want):
            np.testing.assert_array_equal(got[i].copy_to_host(), w, err_msg=f"{interpolation}, {where}")
    fused = image.resize_crop_normalize(on_gpu, size=9, crop=[8, 11])
    assert fused.shape == (4, 3, 8, 11), where
    want = np.stack([image.resize_crop_normalize(x, size=9, crop=[8, 11]) for x in items])
    np.testing.assert_allclose(fused.copy_to_host(), want, rtol=0, atol=1e-6, err_msg=where)
    boxed = image.letterbox(on_gpu, size=[9, 12], fill=[1, 2, 3])
    want_boxed = image.letterbox(items, size=[9, 12], fill=[1, 2, 3])
    for name in ("image", "scale", "offset"):
        np.testing.assert_array_equal(getattr(boxed, name).copy_to_host(), np.stack(getattr(want_boxed, name)), err_msg=f"{name}, {where}")


@pytest.mark.parametrize("conversion", ["nv12_to_rgb", "i420_to_bgr"])
def test_yuv_420_frames_convert_on_the_gpu_as_on_the_cpu(conversion: str) -> None:
    """Camera / video-decoder frames (Y plane, then chroma at half resolution), a batch of two."""
    rng = _rng()
    h, w = 2 * int(rng.integers(1, 6)), 2 * int(rng.integers(1, 12))
    frames = rng.integers(0, 256, (2, h * 3 // 2, w, 1), dtype=np.uint8)
    got = image.convert_color(cuda.to_device(frames), conversion=conversion).copy_to_host()
    assert got.shape == (2, h, w, 3)
    np.testing.assert_array_equal(got, np.stack([image.convert_color(f, conversion=conversion) for f in frames]))


def test_gpu_inputs_are_checked_like_host_ones() -> None:
    with pytest.raises(InputError, match="image.normalize: input 'image' has dtype int32"):
        image.normalize(cuda.to_device(np.ones((2, 2, 3), np.int32)), mean=[0.0], std=[1.0])
    with pytest.raises(InputError, match="must have shape"):
        image.flip(cuda.to_device(np.ones((2, 3), np.uint8)))
    with pytest.raises(InputError, match="image.flip: input 'image' mixes GPU and host arrays in one batch"):
        image.flip([cuda.to_device(np.ones((2, 3, 1), np.uint8)), np.ones((4, 3, 1), np.uint8)])


def test_a_ragged_gpu_batch_gives_a_list_or_a_dense_batch_as_on_the_cpu() -> None:
    """Samples of different sizes: outputs of different sizes stay a list, equal sizes stack."""
    rng = _rng()
    items = [rng.integers(0, 256, (int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3), dtype=np.uint8) for _ in range(3)]
    flipped = image.flip([cuda.to_device(x) for x in items], axis="both")
    assert isinstance(flipped, list) and len(flipped) == 3
    for got, x in zip(flipped, items):
        np.testing.assert_array_equal(got.copy_to_host(), x[::-1, ::-1])
    crops = image.center_crop([cuda.to_device(x) for x in items], size=[2, 2])
    assert crops.shape == (3, 2, 2, 3)  # one dense GPU batch
    np.testing.assert_array_equal(crops.copy_to_host(), np.stack(image.center_crop(items, size=[2, 2])))


def test_the_kit_catches_a_cuda_kernel_that_drops_a_channel() -> None:
    """A kernel that leaves the last channel unwritten: the poisoned outputs differ from the reference."""
    from twinpipe.ops.image._common import image_spec, same_shape

    op = Op("test.cuda_copy", doc="copy", inputs=[image_spec()], outputs=[image_spec(dtypes=None)], params=[],
            reference=lambda image: image.copy(), infer=same_shape, register=False)

    spec = importlib.util.spec_from_file_location("_broken_cuda", Path(__file__).with_name("_broken_cuda.py"))
    assert spec is not None and spec.loader is not None
    broken = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(broken)

    @op.kernel("cuda")
    def _broken(image: object, *, out: object) -> None:
        broken.first_channels_only[(1, 1), (8, 8)](image, out)

    with pytest.raises((OpCheckError, OpError)) as info:
        check_op(op, devices=("cuda",), cases=3, dtypes=["uint8"])
    assert "cuda kernel" in str(info.value) and "output 'image'" in str(info.value)
