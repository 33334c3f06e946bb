"""``check_op``: one call that checks an op's kernels, contracts, dispatch, randomness and pickling."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _device
from .._errors import OpError
from .._op import Kernel, Op
from .._spec import BYTES, TensorSpec

__all__ = ["CheckReport", "OpCheckError", "assert_close", "check_op", "example_case"]


class OpCheckError(AssertionError):
    """A check failed; the message says which op, kernel, dtype, shape, params and seed."""


@dataclass
class CheckReport:
    """What ``check_op`` ran, so a test can tell that it checked something."""

    op: str
    seed: int
    cases: dict[str, int] = field(default_factory=dict)  # "cpu/uint8" -> cases compared
    checks: list[str] = field(default_factory=list)

    def count(self, key: str) -> None:
        self.cases[key] = self.cases.get(key, 0) + 1


def _poison(shape: tuple[int, ...], dtype: np.dtype, which: int) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.full(shape, np.nan if which == 0 else np.finfo(dt).min, dt)
    if dt.kind == "b":
        return np.full(shape, which == 0, dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.full(shape, info.max - 0x5A if which == 0 else info.min + 0x5A, dt)
    raise TypeError(f"cannot poison dtype {dt}")


def assert_close(actual: Any, expected: Any, atol: float, what: str) -> None:
    """Raise ``OpCheckError`` unless arrays agree in shape, dtype and values within ``atol``."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.shape != e.shape:
        raise OpCheckError(f"{what}: shape {list(a.shape)} != expected {list(e.shape)}")
    if a.dtype != e.dtype:
        raise OpCheckError(f"{what}: dtype {a.dtype} != expected {e.dtype}")
    if a.dtype == BYTES:
        if not all(x == y for x, y in zip(a.ravel(), e.ravel())):
            raise OpCheckError(f"{what}: values differ")
        return
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.asarray(np.abs(a.astype(np.float64) - e.astype(np.float64)))  # 0-d stays an array
    diff[np.isnan(diff)] = np.inf  # NaN against a number, or inf against -inf
    diff[(a == e) | (np.isnan(a) & np.isnan(e))] = 0  # equal infinities and NaN pairs agree
    if diff.size and diff.max() > atol:
        idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
        bad = int((diff > atol).sum())
        raise OpCheckError(
            f"{what}: {bad} of {diff.size} elements differ by more than {atol}; "
            f"max {diff.max():.6g} at {list(map(int, idx))} (got {a[idx]}, expected {e[idx]})"
        )


def _default_inputs(op: Op, rng: np.random.Generator, dtype: np.dtype) -> tuple[Any, ...]:
    from ..image._common import random_image

    out = []
    for spec in op.inputs:
        if spec.is_bytes:
            raise OpCheckError(f"{op.name}: bytes inputs need example_inputs= on the op")
        dt = dtype if spec.dtypes is None or dtype in spec.dtypes else spec.dtypes[0]
        out.append(_random_array(rng, spec, dt, random_image))
    return tuple(out)


def _random_array(rng: np.random.Generator, spec: TensorSpec, dtype: np.dtype, image: Callable[..., np.ndarray]) -> np.ndarray:
    fixed = spec.fixed_dims()
    if spec.rank == 3 and spec.shape[:2] == ("H", "W"):
        channels = (fixed[2],) if 2 in fixed else (1, 3, 4)
        return image(rng, dtype, channels=channels)
    shape = tuple(fixed.get(i, int(rng.integers(1, 20))) for i in range(spec.rank))
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def example_case(op: Op, rng: np.random.Generator, dtype: np.dtype) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """One random (inputs, validated params, drawn random choices) case for ``op``."""
    inputs = op.example_inputs(rng, dtype) if op.example_inputs else _default_inputs(op, rng, dtype)
    raw = op.example_params(rng, *inputs) if op.example_params else {}
    params = op.validate_params(raw)
    drawn = op.draw(rng, *inputs, **params) if op.draw is not None else {}
    return tuple(inputs), params, drawn


def _dtypes(op: Op, dtypes: Sequence[Any] | None) -> list[np.dtype]:
    if dtypes is not None:
        return [np.dtype(d) for d in dtypes]
    first = op.inputs[0].dtypes
    return list(first) if first else [np.dtype(np.float32)]


def _copy(x: Any) -> Any:
    return x.copy() if isinstance(x, np.ndarray) else x


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return bool(a == b)


def _describe_case(op: Op, inputs: tuple[Any, ...], params: dict[str, Any], drawn: dict[str, Any], seed: int) -> str:
    shapes = ", ".join(f"{s.name}={list(x.shape)} {x.dtype}" if isinstance(x, np.ndarray) else f"{s.name}={type(x).__name__}" for s, x in zip(op.inputs, inputs))
    extra = f", drawn {drawn}" if drawn else ""
    return f"{op.name} on {shapes}, params {params}{extra} (check_op seed={seed})"


def _check_kernel(op: Op, kernel: Kernel, inputs: tuple[Any, ...], params: dict[str, Any], drawn: dict[str, Any], expected: tuple[Any, ...], where: str) -> None:
    before = tuple(_copy(x) for x in inputs)
    n = len(op.outputs)

    def inputs_untouched() -> None:
        for spec, x, b in zip(op.inputs, inputs, before):
            if not _same(x, b):
                raise OpCheckError(f"{where}: the kernel modified its input {spec.name!r}")

    if op.infer is None:  # the kernel sizes its outputs
        if kernel.device == "cuda":
            dev_in = _on_gpu(inputs)
            with _device.launching(None):
                got = kernel.fn(*dev_in, **params, **drawn)
            got = (got,) if n == 1 else tuple(got)
            got = tuple(_device.to_host_copy(g) for g in got)
            _untouched_on_device(inputs, dev_in, where)
        else:
            got = kernel.fn(*inputs, **params, **drawn)
            inputs_untouched()
            got = (got,) if n == 1 else tuple(got)
        for spec, g, e in zip(op.outputs, got, expected):
            assert_close(g, e, op.tolerance_for(np.asarray(e).dtype, np.asarray(e)), f"{where}: output {spec.name!r}")
    else:
        for which in (0, 1):  # two poisons: an element the kernel never writes differs in one run
            metas = op.infer(*inputs, **params, **drawn)
            outs = tuple(_poison(shape, dt, which) for shape, dt in metas)
            if kernel.device == "cuda":  # on the device (or Numba's simulator): copies in, the kernel, copies out
                outs = _on_device(kernel, inputs, outs, params, drawn, where)
            else:
                kernel.fn(*inputs, out=outs[0] if n == 1 else outs, **params, **drawn)
                inputs_untouched()
            for spec, g, e in zip(op.outputs, outs, expected):
                assert_close(g, e, op.tolerance_for(np.asarray(e).dtype, np.asarray(e)), f"{where}: output {spec.name!r} (poison {which})")
    if kernel.device == "cuda" and not op.is_random:  # and through the op's dispatch: GPU arrays in, GPU arrays out
        bound = op.bind(**params)
        got = bound.on_gpu(*inputs) if kernel.host_inputs else bound(*_on_gpu(inputs))
        got = (got,) if n == 1 else tuple(got)
        for spec, g, e in zip(op.outputs, got, expected):
            if not _device.is_device_array(g):
                raise OpCheckError(f"{where}: GPU input, but output {spec.name!r} is {type(g).__name__}, not a GPU array")
            assert_close(_device.to_host_copy(g), e, op.tolerance_for(np.asarray(e).dtype, np.asarray(e)),
                         f"{where}: output {spec.name!r} (GPU arrays through the op)")


def _on_device(kernel: Kernel, inputs: tuple[Any, ...], outs: tuple[np.ndarray, ...], params: dict[str, Any],
               drawn: dict[str, Any], where: str) -> tuple[np.ndarray, ...]:
    """Run a CUDA kernel on device copies of ``inputs`` and ``outs``; the outputs copied back."""
    dev_in = _on_gpu(inputs)
    dev_out = tuple(_device.to_device(o) for o in outs)
    with _device.launching(None):  # a CUDA kernel takes dense batches: one sample is a batch of one
        views = [_device.batch_view(d, False) for d in dev_out]
        kernel.fn(*(_device.batch_view(d, False) for d in dev_in), out=views[0] if len(views) == 1 else tuple(views),
                  **params, **drawn)
    _untouched_on_device(inputs, dev_in, where)
    return tuple(_device.to_host_copy(d) for d in dev_out)


def _on_gpu(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """Device copies of the array inputs (others, such as bytes, as they are)."""
    return tuple(_device.to_device(x) if isinstance(x, np.ndarray) else x for x in inputs)


def _untouched_on_device(inputs: tuple[Any, ...], dev_in: tuple[Any, ...], where: str) -> None:
    for x, d in zip(inputs, dev_in):
        if isinstance(x, np.ndarray) and not _same(_device.to_host_copy(d), x):
            raise OpCheckError(f"{where}: the kernel modified an input on the device")


def _check_batched_kernel(op: Op, kernel: Kernel, inputs: tuple[Any, ...], params: dict[str, Any], expected: tuple[Any, ...], where: str) -> None:
    """A batched kernel on a ragged batch of two and a dense batch of two equals the reference."""
    if op.infer is None:
        raise OpCheckError(f"{where}: a batched kernel needs the op to declare infer=")
    # the second sample has the same shape (so the params stay valid) but other values
    second = tuple(x[::-1].copy() if isinstance(x, np.ndarray) and x.ndim else x for x in inputs)
    ref2 = op.reference(*second, **params)
    expected2 = (ref2,) if len(op.outputs) == 1 else tuple(ref2)
    if kernel.device == "cuda":  # through the dispatch: a ragged batch of GPU arrays is what it is for
        got = op.bind(**params)(*[[_device.to_device(a), _device.to_device(b)] if isinstance(a, np.ndarray) else a
                                  for a, b in zip(inputs, second)])
        got = (got,) if len(op.outputs) == 1 else tuple(got)
        for spec, o, e1, e2 in zip(op.outputs, got, expected, expected2):
            tol = op.tolerance_for(np.asarray(e1).dtype, np.asarray(e1))
            items = o if isinstance(o, list) else [o[0], o[1]]
            assert_close(_device.to_host_copy(items[0]), e1, tol, f"{where}: ragged GPU batch item 0, output {spec.name!r}")
            assert_close(_device.to_host_copy(items[1]), e2, tol, f"{where}: ragged GPU batch item 1, output {spec.name!r}")
        return
    for form in ("ragged", "dense"):
        if form == "dense" and not all(isinstance(x, np.ndarray) for x in inputs):
            continue
        batch = [[a, b] if form == "ragged" else np.stack([a, b]) for a, b in zip(inputs, second)]
        metas = op.infer(*inputs, **params)
        outs = tuple(
            [_poison(shape, dt, 0), _poison(shape, dt, 1)] if form == "ragged" else _poison((2, *shape), dt, 0)
            for shape, dt in metas
        )
        kernel.fn(*batch, out=outs[0] if len(outs) == 1 else outs, **params)
        for spec, o, e1, e2 in zip(op.outputs, outs, expected, expected2):
            tol = op.tolerance_for(np.asarray(e1).dtype, np.asarray(e1))
            assert_close(o[0], e1, tol, f"{where}: {form} batch item 0, output {spec.name!r}")
            assert_close(o[1], e2, tol, f"{where}: {form} batch item 1, output {spec.name!r}")


def _check_contract(op: Op, inputs: tuple[Any, ...], params: dict[str, Any], drawn: dict[str, Any], expected: tuple[Any, ...], where: str) -> None:
    if len(expected) != len(op.outputs):
        raise OpCheckError(f"{where}: reference returned {len(expected)} outputs, op declares {len(op.outputs)}")
    metas = list(op.infer(*inputs, **params, **drawn)) if op.infer else None
    for k, (spec, e) in enumerate(zip(op.outputs, expected)):
        e = np.asarray(e)
        if spec.dtypes is not None and e.dtype not in spec.dtypes:
            raise OpCheckError(f"{where}: reference output {spec.name!r} has dtype {e.dtype}, declared {spec.dtypes}")
        if e.dtype != BYTES and e.ndim != spec.rank:
            raise OpCheckError(f"{where}: reference output {spec.name!r} has rank {e.ndim}, declared [{' '.join(spec.shape)}]")
        if metas is not None and (tuple(metas[k][0]) != e.shape or np.dtype(metas[k][1]) != e.dtype):
            raise OpCheckError(f"{where}: infer says {spec.name!r} is {metas[k]}, reference gave {e.shape} {e.dtype}")


def _check_dispatch(op: Op, inputs: tuple[Any, ...], params: dict[str, Any], seed: int, where: str) -> None:
    """Calling the op: torch in → torch out, dense and ragged batches equal per-sample calls."""
    import torch

    call_kw: dict[str, Any] = dict(params)
    if op.is_random:
        call_kw["rng"] = seed
    single = op(*inputs, **call_kw)
    singles = single if isinstance(single, tuple) else (single,)
    arrays = all(isinstance(x, np.ndarray) and x.dtype != BYTES for x in inputs)
    if arrays:
        got = op(*(torch.from_numpy(x) for x in inputs), **call_kw)
        gots = got if isinstance(got, tuple) else (got,)
        for spec, g, s in zip(op.outputs, gots, singles):
            if spec.is_bytes:  # BYTES have no torch type: they stay NumPy object arrays
                if not isinstance(g, np.ndarray):
                    raise OpCheckError(f"{where}: torch input gave {type(g).__name__} for BYTES output {spec.name!r}, not a NumPy array")
                assert_close(g, s, 0, f"{where}: torch call, output {spec.name!r}")
                continue
            if not isinstance(g, torch.Tensor):
                raise OpCheckError(f"{where}: torch input gave {type(g).__name__} for output {spec.name!r}, not a torch tensor")
            assert_close(g.numpy(), s, 0, f"{where}: torch call, output {spec.name!r}")
        # a view with negative strides (what a flip or a crop of a bigger array gives)
        views = tuple(x[::-1].copy()[::-1] if x.ndim else x for x in inputs)
        got = op(*views, **call_kw)
        for spec, g, s in zip(op.outputs, got if isinstance(got, tuple) else (got,), singles):
            assert_close(g, s, 0, f"{where}: a non-contiguous view as input, output {spec.name!r}")
    if op.is_random:
        return  # per-sample draws differ within a batch; determinism is checked separately
    second = _other_shape(op, inputs, call_kw)
    ragged = op(*([x, y] for x, y in zip(inputs, second[0])), **call_kw)
    rags = ragged if isinstance(ragged, tuple) else (ragged,)
    for spec, r, s, s2 in zip(op.outputs, rags, singles, second[1]):
        if not isinstance(r, list) or len(r) != 2:
            raise OpCheckError(f"{where}: a ragged batch of 2 gave {type(r).__name__} for {spec.name!r}, not a list of 2")
        assert_close(r[0], s, 0, f"{where}: ragged batch item 0, output {spec.name!r}")
        assert_close(r[1], s2, 0, f"{where}: ragged batch item 1 (another shape), output {spec.name!r}")
    if arrays:
        dense = op(*(np.stack([x, x]) for x in inputs), **call_kw)
        dens = dense if isinstance(dense, tuple) else (dense,)
        for spec, d, s in zip(op.outputs, dens, singles):
            assert_close(d, np.stack([s, s]), 0, f"{where}: dense batch, output {spec.name!r}")


def _other_shape(op: Op, inputs: tuple[Any, ...], call_kw: dict[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """A second sample of another shape (an image transposed to W H C) with its own result, for a
    truly ragged batch; the same sample when the op's params do not fit the other shape."""
    single = op(*inputs, **call_kw)
    same = (inputs, single if isinstance(single, tuple) else (single,))
    if len(inputs) != 1 or not isinstance(inputs[0], np.ndarray) or inputs[0].ndim != 3 or inputs[0].shape[0] == inputs[0].shape[1]:
        return same
    other = (np.ascontiguousarray(inputs[0].transpose(1, 0, 2)),)
    try:
        result = op(*other, **call_kw)
    except OpError:
        return same
    return other, result if isinstance(result, tuple) else (result,)


def _check_random(op: Op, inputs: tuple[Any, ...], params: dict[str, Any], seed: int, where: str) -> None:
    a = op(*inputs, rng=seed, **params)
    b = op(*inputs, rng=np.random.default_rng(seed), **params)
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert_close(x, y, 0, f"{where}: same seed, different result")
    s1 = op(*inputs, mode="serve", **params)
    s2 = op(*inputs, mode="serve", **params)
    assert op.serve is not None
    ref = op.serve(*inputs, **params)
    refs = ref if isinstance(ref, tuple) else (ref,)
    for x, y, r in zip(s1 if isinstance(s1, tuple) else (s1,), s2 if isinstance(s2, tuple) else (s2,), refs):
        assert_close(x, y, 0, f"{where}: serve mode is not deterministic")
        assert_close(x, r, 0, f"{where}: serve mode differs from the declared serve behaviour")


def _check_pickle(op: Op, inputs: tuple[Any, ...], params: dict[str, Any], seed: int, where: str) -> None:
    bound = op.bind(**params)
    try:
        again = pickle.loads(pickle.dumps(bound))
    except Exception as e:
        raise OpCheckError(f"{where}: a bound op does not survive pickling ({e}); is the op registered?") from e
    if pickle.loads(pickle.dumps(op)) is not op:
        raise OpCheckError(f"{where}: unpickling the op gave another object")
    rng = seed if op.is_random else None
    a, b = bound(*inputs, rng=rng), again(*inputs, rng=rng)
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert_close(x, y, 0, f"{where}: pickled op gives another result")


def check_op(
    op: Op,
    *,
    cases: int = 12,
    seed: int | None = None,
    dtypes: Sequence[Any] | None = None,
    devices: Sequence[str] = ("cpu",),
) -> CheckReport:
    """Check ``op`` in one call; raise ``OpCheckError`` naming the failing case.

    For every accepted dtype and ``cases`` random samples (fresh seed unless ``seed`` is given;
    the seed is in every failure message so a failure can be replayed): the reference's outputs
    match the declared signature and ``infer``; every kernel registered for ``devices`` matches
    the reference within the op's tolerance, writing into outputs poisoned twice with different
    values, without touching its inputs. Then, once per dtype: a torch tensor in gives a torch
    tensor out with the same values, dense and ragged batches equal per-sample calls, a random
    op is reproducible under a seed and deterministic in serve mode, and the op and a bound op
    survive pickling.
    """
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    report = CheckReport(op.name, seed)
    kernels = [k for k in op.kernels.values() if k.device in devices]
    for dtype in _dtypes(op, dtypes):
        for i in range(cases):
            case_seed = seed + 7919 * i + sum(dtype.name.encode())
            rng = np.random.default_rng(case_seed)
            inputs, params, drawn = example_case(op, rng, dtype)
            where = _describe_case(op, inputs, params, drawn, seed)
            ref = op.reference(*inputs, **params, **drawn)
            expected = (ref,) if len(op.outputs) == 1 else tuple(ref)
            _check_contract(op, inputs, params, drawn, expected, where)
            for kernel in kernels:
                if kernel.batched:
                    _check_batched_kernel(op, kernel, inputs, params, expected, f"{kernel.device} batched kernel, {where}")
                    report.count(f"{kernel.device}-batched/{dtype.name}")
                else:
                    _check_kernel(op, kernel, inputs, params, drawn, expected, f"{kernel.device} kernel, {where}")
                    report.count(f"{kernel.device}/{dtype.name}")
            report.count(f"reference/{dtype.name}")
            if i == 0:
                _check_dispatch(op, inputs, params, case_seed, where)
                if op.is_random:
                    _check_random(op, inputs, params, case_seed, where)
                _check_pickle(op, inputs, params, case_seed, where)
                report.checks.append(f"dispatch/{dtype.name}")
    return report
