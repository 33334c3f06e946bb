"""The op testing kit catches the kernel bugs it promises to catch."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings

from twinpipe.ops import Op, TensorSpec, image
from twinpipe.ops.testing import OpCheckError, assert_close, check_op
from twinpipe.ops.testing.strategies import dense_batches, images, ragged_batches

SPEC = [TensorSpec("image", (np.uint8, np.float32), "H W C")]


def _double_op(kernel: Any, *, infer: Any = None, out_dtype: Any = None) -> Op:
    def ref(image: np.ndarray) -> np.ndarray:
        return (image.astype(np.float32) * 2).astype(np.float32)

    op = Op(
        "test.double",
        doc="2 * image as float32.",
        inputs=SPEC,
        outputs=[TensorSpec("image", (out_dtype or np.float32,), "H W C")],
        reference=ref,
        infer=infer or (lambda image: [(image.shape, np.dtype(np.float32))]),
    )
    op.kernel("cpu")(kernel)
    return op


def _good(image: np.ndarray, *, out: np.ndarray) -> None:
    out[...] = image.astype(np.float32) * 2


def test_a_correct_op_passes_and_reports_what_ran() -> None:
    report = check_op(_double_op(_good), cases=5)
    assert report.cases == {"cpu/uint8": 5, "reference/uint8": 5, "cpu/float32": 5, "reference/float32": 5}
    assert report.checks == ["dispatch/uint8", "dispatch/float32"]


def test_wrong_values_are_caught_with_the_case() -> None:
    def off_by_one_on_last_column(image: np.ndarray, *, out: np.ndarray) -> None:
        out[...] = image.astype(np.float32) * 2
        out[:, -1] += 1

    with pytest.raises(OpCheckError, match=r"cpu kernel, test.double on image=\[\d+, \d+, \d+\] uint8.*seed=42.*differ by more than"):
        check_op(_double_op(off_by_one_on_last_column), seed=42)


def test_unwritten_output_elements_are_caught_by_poisoning() -> None:
    def skips_first_row(image: np.ndarray, *, out: np.ndarray) -> None:
        out[1:] = image[1:].astype(np.float32) * 2

    with pytest.raises(OpCheckError, match="poison"):
        check_op(_double_op(skips_first_row))


def test_a_kernel_that_modifies_its_input_is_caught() -> None:
    def clobbers(image: np.ndarray, *, out: np.ndarray) -> None:
        out[...] = image.astype(np.float32) * 2
        image[0, 0, 0] = image[0, 0, 0] ^ 1 if image.dtype == np.uint8 else image[0, 0, 0] + 1

    with pytest.raises(OpCheckError, match="modified its input 'image'"):
        check_op(_double_op(clobbers))


def test_infer_disagreeing_with_the_reference_is_caught() -> None:
    op = _double_op(_good, infer=lambda image: [((image.shape[0], image.shape[1], 1), np.dtype(np.float32))])
    with pytest.raises(OpCheckError, match="infer says 'image' is"):
        check_op(op)


def test_reference_dtype_must_match_the_declared_one() -> None:
    with pytest.raises(OpCheckError, match="has dtype float32, declared"):
        check_op(_double_op(_good, out_dtype=np.float64))


def test_a_nondeterministic_random_op_is_caught() -> None:
    state = {"n": 0}

    def draw(rng: np.random.Generator, image: np.ndarray) -> dict[str, Any]:
        state["n"] += 1  # ignores rng: different every call
        return {"k": state["n"] % 4}

    op = Op(
        "test.badrandom",
        doc="rotates by a count it does not draw from rng.",
        inputs=SPEC,
        outputs=[TensorSpec("image", None, "H W C")],
        reference=lambda image, *, k: np.rot90(image, k).copy(),
        draw=draw,
        serve=lambda image: image.copy(),
    )
    # caught by whichever same-seed comparison runs first (numpy vs torch call, or two calls)
    with pytest.raises(OpCheckError, match="same seed, different result|torch call"):
        check_op(op, dtypes=[np.uint8])


def test_assert_close_reports_location_and_values() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = a.copy()
    b[1, 2] += 0.5
    with pytest.raises(OpCheckError, match=r"1 of 6 elements differ by more than 0.1; max 0.5 at \[1, 2\]"):
        assert_close(a, b, 0.1, "x")
    with pytest.raises(OpCheckError, match="dtype float64 != expected float32"):
        assert_close(a.astype(np.float64), a, 0, "x")
    inf = np.array([np.inf, -np.inf, 1.0])
    assert_close(inf, inf.copy(), 0, "equal infinities agree")
    with pytest.raises(OpCheckError, match="max inf"):
        assert_close(inf, -inf, 0, "opposite infinities differ")
    nan = a.copy()
    nan[0, 0] = np.nan
    with pytest.raises(OpCheckError):
        assert_close(nan, a, 1.0, "x")


@settings(max_examples=25, deadline=None)
@given(images())
def test_image_strategy_draws_hwc_images_flip_handles(img: np.ndarray) -> None:
    assert img.ndim == 3 and img.shape[2] in (1, 3, 4) and img.dtype in (np.uint8, np.float32)
    np.testing.assert_array_equal(image.flip(img, axis="both"), img[::-1, ::-1])


@settings(max_examples=15, deadline=None)
@given(dense_batches(), ragged_batches())
def test_batch_strategies_flip_batches_like_samples(dense: np.ndarray, ragged: list[np.ndarray]) -> None:
    np.testing.assert_array_equal(image.flip(dense), dense[:, :, ::-1])
    assert len({r.dtype for r in ragged}) == 1 and len({r.shape[2] for r in ragged}) == 1
    for got, r in zip(image.flip(ragged, axis="vertical"), ragged):
        np.testing.assert_array_equal(got, r[::-1])


def test_geometry_ops_pass_the_kit() -> None:
    for op in (image.flip, image.rotate90):
        report = check_op(op)
        assert report.cases["cpu/uint8"] > 0 and report.cases["cpu/float32"] > 0


def test_an_unregistered_op_fails_the_pickling_check() -> None:
    op = Op("test.unregistered", doc="copy", inputs=SPEC, outputs=[TensorSpec("image", None, "H W C")],
            reference=lambda image: image.copy(), register=False)
    with pytest.raises(OpCheckError, match="does not survive pickling .* is the op registered"):
        check_op(op, cases=1)


def test_batched_kernels_are_checked_on_ragged_and_dense_batches() -> None:
    op = _double_op(_good)

    @op.kernel("cpu", batched=True)
    def _batched_skips_second(images: Any, *, out: Any) -> None:
        out[0][...] = np.asarray(images[0], np.float32) * 2  # forgets every sample after the first

    with pytest.raises(OpCheckError, match="batched kernel.*batch item 1"):
        check_op(op, cases=2)

    @op.kernel("cpu", batched=True)
    def _batched(images: Any, *, out: Any) -> None:
        for i, img in enumerate(images):
            out[i][...] = np.asarray(img, np.float32) * 2

    assert check_op(op, cases=2).cases["cpu-batched/uint8"] == 2


def test_a_kernel_that_assumes_contiguous_input_is_caught() -> None:
    def wrong_on_views(image: np.ndarray, *, out: np.ndarray) -> None:
        src = image if image.flags.c_contiguous else image[::-1]  # "fixes" the strides, wrongly
        out[...] = src.astype(np.float32) * 2

    with pytest.raises(OpCheckError, match="non-contiguous view"):
        check_op(_double_op(wrong_on_views), cases=3)


def test_ragged_batches_mix_shapes() -> None:
    seen: list[tuple[int, ...]] = []

    def recording(image: np.ndarray, *, out: np.ndarray) -> None:
        seen.append(image.shape)
        _good(image, out=out)

    check_op(_double_op(recording), cases=4)
    assert any(a[:2] == b[1::-1] and a != b for a, b in itertools.pairwise(seen)), "no ragged batch of two shapes was run"


def test_assert_close_compares_0d_arrays() -> None:
    assert_close(np.asarray(1.5, np.float32), np.asarray(1.5, np.float32), 0, "equal scalars")
    with pytest.raises(OpCheckError, match=r"1 of 1 elements differ by more than 0.1"):
        assert_close(np.asarray(1.0), np.asarray(2.0), 0.1, "scalars")
