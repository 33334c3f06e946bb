"""The op model: declaration, parameter validation, dispatch, batches, torch types, pickling."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import (
    Float,
    InputError,
    Int,
    Op,
    OpError,
    Outputs,
    Param,
    ParamError,
    TensorSpec,
    get_op,
    image,
    list_ops,
)


def _rng() -> np.random.Generator:
    return np.random.default_rng()


def _img(h: int = 7, w: int = 5, c: int = 3, dtype: Any = np.uint8) -> np.ndarray:
    return _rng().integers(1, 255, size=(h, w, c)).astype(dtype)


def _affine_op(**kw: Any) -> Op:
    """A two-output toy op: y = a*x + b, and the sum of y, with a CPU kernel that writes `out`."""

    def ref(x: np.ndarray, *, a: float, b: int) -> tuple[np.ndarray, np.ndarray]:
        y = (x * np.float32(a) + np.float32(b)).astype(np.float32)
        return y, np.array([y.sum()], np.float32)

    op = Op(
        "test.affine",
        doc="y = a*x + b, and the sum of y.",
        inputs=[TensorSpec("x", (np.float32, np.uint8), "N")],
        outputs=[TensorSpec("y", (np.float32,), "N"), TensorSpec("total", (np.float32,), "1")],
        params=[Param("a", Float(min=0), 1.0, "gain"), Param("b", Int(min=-3, max=3), 0, "offset")],
        reference=ref,
        infer=lambda x, **_: [(x.shape, np.dtype(np.float32)), ((1,), np.dtype(np.float32))],
        register=False,
        **kw,
    )

    @op.kernel("cpu")
    def _cpu(x: np.ndarray, *, out: tuple[np.ndarray, np.ndarray], a: float, b: int) -> None:
        y, total = ref(x, a=a, b=b)
        out[0][...] = y
        out[1][...] = total

    return op


def test_signature_params_and_docs_are_introspectable() -> None:
    op = _affine_op()
    assert op.signature == "test.affine(x: float32|uint8[N], *, a=1.0, b=0) -> y: float32[N], total: float32[1]"
    text = op.describe()
    assert "a: a finite number >= 0; default 1.0. gain" in text
    assert "b: an integer in [-3, 3]; default 0. offset" in text
    assert "Kernels: cpu" in text
    assert op.__doc__ == text


def test_params_are_validated_when_bound() -> None:
    op = _affine_op()
    with pytest.raises(ParamError, match=r"test.affine: parameter 'b': expected an integer in \[-3, 3\], got 9"):
        op.bind(b=9)
    with pytest.raises(ParamError, match="parameter 'a': expected a finite number >= 0, got 'big'"):
        op.bind(a="big")
    with pytest.raises(ParamError, match="unknown parameter 'gain'; parameters are: a, b"):
        op.bind(gain=2.0)
    with pytest.raises(ParamError, match="image.flip: unknown parameter 'axs'; did you mean 'axis'"):
        image.flip.bind(axs="vertical")
    with pytest.raises(ParamError, match=r"parameter 'b': expected an integer .*, got True"):
        op.bind(b=True)  # a bool is not an int, even though Python says so
    assert op.bind(a=2, b=np.int64(1)).params == {"a": 2.0, "b": 1}


def test_required_param_is_reported() -> None:
    with pytest.raises(ParamError, match="image.rotate90: unknown parameter 'turns'"):
        image.rotate90(_img(), turns=1)
    op = Op("test.req", doc="d", inputs=[TensorSpec("x", None, "N")], outputs=[TensorSpec("x", None, "N")],
            params=[Param("k", Int())], reference=lambda x, k: x, register=False)
    with pytest.raises(ParamError, match=r"test.req: parameter 'k' is required \(an integer\)"):
        op.bind()


def test_float_params_reject_non_finite_values_and_ints_stay_in_64_bits() -> None:
    op = _affine_op()
    for bad in (float("inf"), float("nan"), -float("inf")):
        with pytest.raises(ParamError, match="parameter 'a': expected a finite number >= 0"):
            op.bind(a=bad)
    with pytest.raises(ParamError, match="image.crop: parameter 'top': expected an integer"):
        image.crop(_img(), top=2**70, left=0, height=1, width=1)


def test_dense_batch_with_per_sample_shapes_that_differ_gives_a_list_of_the_callers_type() -> None:
    op = Op("test.positive", doc="the positive elements", inputs=[TensorSpec("x", (np.float32,), "N")],
            outputs=[TensorSpec("x", (np.float32,), "M")], reference=lambda x: x[x > 0].copy(), register=False)
    out = op(torch.tensor([[1.0, -1.0, 2.0], [3.0, 4.0, 5.5]]))
    assert isinstance(out, list)
    assert all(isinstance(o, torch.Tensor) for o in out)
    assert [o.tolist() for o in out] == [[1.0, 2.0], [3.0, 4.0, 5.5]]


def test_multi_output_returns_named_outputs() -> None:
    op = _affine_op()
    x = _rng().standard_normal(11).astype(np.float32)
    out = op(x, a=2.0, b=1)
    assert isinstance(out, Outputs)
    y, total = out
    np.testing.assert_array_equal(y, x * np.float32(2) + np.float32(1))
    assert out.total is total and out.as_dict()["y"] is y
    with pytest.raises(AttributeError, match="outputs are y, total"):
        _ = out.nope
    assert pickle.loads(pickle.dumps(out)).names == ("y", "total")


def test_dense_batch_is_written_in_place_and_equals_per_sample() -> None:
    op = _affine_op()
    xs = _rng().standard_normal((4, 9)).astype(np.float32)
    y, total = op(xs, a=0.5, b=-2)
    assert y.shape == (4, 9) and total.shape == (4, 1)
    for i in range(4):
        yi, ti = op(xs[i], a=0.5, b=-2)
        np.testing.assert_array_equal(y[i], yi)
        np.testing.assert_array_equal(total[i], ti)


def test_ragged_batch_maps_per_sample() -> None:
    imgs = [_img(3, 4), _img(6, 1), _img(1, 1)]
    out = image.rotate90(imgs, k=1)
    assert isinstance(out, list) and [o.shape for o in out] == [(4, 3, 3), (1, 6, 3), (1, 1, 3)]
    for o, i in zip(out, imgs):
        np.testing.assert_array_equal(o, np.rot90(i))


def test_torch_in_torch_out_shares_memory_on_input() -> None:
    x = _img(5, 8)
    t = torch.from_numpy(x)
    y = image.flip(t, axis="vertical")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.uint8
    np.testing.assert_array_equal(y.numpy(), x[::-1])
    ys = image.flip([t, t[:2]])
    assert all(isinstance(v, torch.Tensor) for v in ys)
    grad = torch.rand(3, 4, 2, requires_grad=True)
    assert torch.equal(image.flip(grad), grad.detach().flip(1))


def test_input_errors_name_the_input_and_what_was_expected() -> None:
    with pytest.raises(InputError, match=r"input 'image' has dtype int64; expected one of uint8, uint16, float32"):
        image.flip(np.ones((2, 2, 3), np.int64))
    with pytest.raises(InputError, match=r"must have shape \[H W C\] \(rank 3, or 4 for a batch\), got shape \[5\]"):
        image.flip(np.ones(5, np.uint8))
    with pytest.raises(InputError, match=r"\(batch item 1\) has dtype float64"):
        image.flip([_img(), np.ones((2, 2, 1))])
    with pytest.raises(InputError, match="is empty"):
        image.flip(np.ones((0, 4, 3), np.uint8))
    with pytest.raises(InputError, match=r"takes 1 input\(s\) \(image\), got 2"):
        image.flip(_img(), _img())
    with pytest.raises(InputError, match="image.flip: input 'image': expected a NumPy array, a torch tensor"):
        image.flip("not an image")
    with pytest.raises(InputError, match=r"image.flip: input 'image' \(batch item 1\): expected a NumPy array"):
        image.flip([_img(), None])
    with pytest.raises(InputError, match="image.flip: input 'image' is an empty batch"):
        image.flip(np.ones((0, 4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="image.flip: input 'image' is an empty batch"):
        image.flip([])
    with pytest.raises(InputError, match="image.flip: input 'image': bfloat16 tensors have no NumPy view"):
        image.flip(torch.ones(2, 2, 3, dtype=torch.bfloat16))


def test_cuda_inputs_without_cuda_kernel_are_a_clear_error() -> None:
    class FakeCuda:
        __cuda_array_interface__ = {"shape": (2, 2, 3), "typestr": "|u1", "data": (0, False), "version": 3}

    with pytest.raises(InputError, match="image.rotate90 has no CUDA kernel; its input is on the GPU"):
        image.rotate90(FakeCuda())


def test_random_op_needs_rng_in_train_mode_and_uses_serve_behaviour() -> None:
    def draw(rng: np.random.Generator, x: np.ndarray) -> dict[str, Any]:
        return {"shift": float(rng.uniform(-1, 1))}

    op = Op(
        "test.jitter",
        doc="x + shift in train mode; identity in serve mode.",
        inputs=[TensorSpec("x", (np.float32,), "N")],
        outputs=[TensorSpec("x", (np.float32,), "N")],
        reference=lambda x, *, shift: (x + np.float32(shift)).astype(np.float32),
        infer=lambda x, **_: [(x.shape, x.dtype)],
        draw=draw,
        serve=lambda x: x.copy(),
        register=False,
    )
    x = _rng().standard_normal(6).astype(np.float32)
    with pytest.raises(OpError, match="test.jitter is random: in train mode pass rng="):
        op(x)
    a, b = op(x, rng=123), op(x, rng=np.random.default_rng(123))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x)
    np.testing.assert_array_equal(op(x, mode="serve"), x)
    np.testing.assert_array_equal(op.bind().apply(x, drawn={"shift": 0.25}), x + np.float32(0.25))
    np.testing.assert_array_equal(op.bind().apply(x, drawn=draw(np.random.default_rng(9), x)), op(x, rng=9))
    with pytest.raises(OpError, match="image.flip is not random"):
        image.flip.bind().apply(x, drawn={})
    batch = op(np.stack([x, x, x]), rng=5)  # one draw per sample, in order
    assert len({float(r[0] - x[0]) for r in batch}) == 3
    with pytest.raises(OpError, match="test.jitter: rng= seed must be a non-negative integer, got -1"):
        op(x, rng=-1)
    with pytest.raises(OpError, match="mode must be 'train' or 'serve'"):
        op(x, rng=1, mode="eval")
    with pytest.raises(OpError, match="declares both draw= and serve="):
        Op("test.bad", doc="", inputs=[], outputs=[], reference=lambda: None, draw=draw, register=False)


def test_batched_kernel_gets_the_whole_batch_once() -> None:
    op = _affine_op()
    calls: list[int] = []

    @op.kernel("cpu", batched=True)
    def _batched(xs: Any, *, out: tuple[Any, Any], a: float, b: int) -> None:
        calls.append(len(xs))
        for i, x in enumerate(xs):
            y, total = op.reference(x, a=a, b=b)
            out[0][i][...] = y
            out[1][i][...] = total

    dense = _rng().standard_normal((3, 5)).astype(np.float32)
    y, _ = op(dense, a=3.0)
    np.testing.assert_allclose(y, dense * 3)
    ragged = [dense[0], dense[1, :2]]
    y2, t2 = op(ragged, a=1.0, b=2)
    assert isinstance(y2, list) and y2[1].shape == (2,)
    np.testing.assert_allclose(t2[1], [(dense[1, :2] + 2).sum()], rtol=1e-6)
    assert calls == [3, 2]


def test_param_names_that_clash_with_the_call_are_rejected() -> None:
    for name in ("mode", "rng", "x"):
        with pytest.raises(OpError, match=f"parameter name '{name}' is taken"):
            Op("test.clash", doc="", inputs=[TensorSpec("x", None, "N")], outputs=[], params=[Param(name, Int(), 0)],
               reference=lambda x, **_: x, register=False)


def test_registry_finds_ops_by_name_with_suggestions() -> None:
    assert get_op("image.flip") is image.flip
    assert "image.flip" in list_ops("image.")
    with pytest.raises(OpError, match=r"unknown op 'image.flp'; did you mean image.flip"):
        get_op("image.flp")


def test_registering_a_taken_name_from_another_module_fails() -> None:
    with pytest.raises(OpError, match="already registered"):
        Op("image.flip", doc="", inputs=[], outputs=[], reference=lambda: None)


def test_ops_and_bound_ops_pickle_by_name() -> None:
    assert pickle.loads(pickle.dumps(image.flip)) is image.flip
    bound = pickle.loads(pickle.dumps(image.rotate90.bind(k=3)))
    x = _img(4, 6)
    np.testing.assert_array_equal(bound(x), np.rot90(x, 3))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_bound_op_runs_in_dataloader_workers(context: str) -> None:
    samples = [_img(int(h), 5) for h in _rng().integers(1, 9, size=6)]
    loader = torch.utils.data.DataLoader(
        samples, batch_size=3, num_workers=2, multiprocessing_context=context,
        collate_fn=image.rotate90.bind(k=2),
    )
    out = [o for batch in loader for o in batch]
    assert len(out) == 6
    for o, s in zip(out, samples):
        np.testing.assert_array_equal(o, np.rot90(s, 2))
