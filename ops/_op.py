"""The op model: a declared signature, a NumPy reference, kernels per device, and dispatch.

An :class:`Op` is called like a function. Its parameters are checked when it is bound; its
inputs decide the device (NumPy or a torch CPU tensor → ``cpu``; CuPy or torch CUDA →
``cuda``) and the batch form (one sample, a dense batch with the batch dimension first, or a
ragged list of samples). Where an op declares ``infer``, outputs are allocated by the op and
written by the kernel, so a dense batch is filled in place rather than stacked afterwards.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from . import _device, _registry
from ._arrays import from_host, is_bytes_like, kind_of, to_host
from ._errors import InputError, OpError, ParamError
from ._params import REQUIRED, Param
from ._spec import BYTES, TensorSpec, dtype_name

__all__ = ["Kernel", "Mode", "Op", "BoundOp", "Outputs", "as_generator"]

Mode = Literal["train", "serve"]
ShapeDtype = tuple[tuple[int, ...], np.dtype]
Infer = Callable[..., Sequence[ShapeDtype]]


@dataclass(frozen=True)
class Kernel:
    """A device implementation of an op.

    A kernel is called as ``fn(*inputs, out=..., **params)`` and writes its result into ``out``
    (one array, or a tuple for several outputs) when the op has an ``infer`` function; otherwise
    it returns its outputs. A ``batched`` kernel receives whole batches (a dense array or a list)
    and the matching batch of outputs.
    """

    device: str
    fn: Callable[..., Any]
    batched: bool = False
    host_inputs: bool = False  # a CUDA kernel reading host inputs (a decoder): ``fn(*inputs, **params)`` → GPU arrays


class Outputs(tuple):  # type: ignore[type-arg]
    """The outputs of a multi-output op: a tuple that also answers by name (``out.scale``)."""

    names: tuple[str, ...]

    def __new__(cls, values: Sequence[Any], names: Sequence[str]) -> Outputs:
        self = super().__new__(cls, values)
        self.names = tuple(names)
        return self

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self.names.index(name)]
        except ValueError:
            raise AttributeError(f"no output named {name!r}; outputs are {', '.join(self.names)}") from None

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.names, self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Outputs, (tuple(self), self.names))


def as_generator(rng: np.random.Generator | int | None, op_name: str) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise OpError(f"{op_name}: rng= seed must be a non-negative integer, got {rng}")
        return np.random.default_rng(int(rng))
    raise OpError(
        f"{op_name} is random: in train mode pass rng= (a seed or a numpy Generator), "
        f"got {type(rng).__name__}; in serve mode pass mode='serve'"
    )


class _DocDescriptor:
    """``op.__doc__`` is the op's live description (``help(op)``); ``Op.__doc__`` the class's."""

    def __init__(self, class_doc: str) -> None:
        self.class_doc = class_doc

    def __get__(self, obj: Op | None, owner: type) -> str:
        return self.class_doc if obj is None else obj.describe()


class Op:
    """A declared, introspectable operation with a NumPy reference and per-device kernels.

    Args:
        name: dotted registry name, e.g. ``"image.resize"``.
        doc: what the op does, its semantics and guarantees (shown by ``help`` and the CLI).
        inputs / outputs: the tensor specs.
        params: the typed parameters.
        reference: the NumPy implementation that defines the op's meaning; returns the outputs.
        infer: ``infer(*inputs, **params) -> [(shape, dtype), ...]``, one per output, from the
            inputs' shapes and dtypes; lets the op allocate outputs for its kernels.
        check: cross-parameter validation, ``check(params) -> None`` raising ``ValueError``.
        draw: random ops only: ``draw(rng, *inputs, **params) -> dict`` of the per-sample random
            choices, which the reference and the kernels then take as keyword arguments.
        serve: random ops only: what the op does in serve mode, ``serve(*inputs, **params)``.
        tolerance: max abs difference allowed between a kernel and the reference, per output dtype
            name or kind: a number, or ``(atol, rtol)`` with rtol relative to the output's peak.
        example_params: ``example_params(rng, *inputs) -> dict`` of valid random params, for the
            op testing kit.
        example_inputs: ``example_inputs(rng, dtype) -> tuple`` of one random sample, for the kit
            (default: arrays drawn from the input specs).
    """

    def __init__(
        self,
        name: str,
        *,
        doc: str,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        params: Sequence[Param] = (),
        reference: Callable[..., Any],
        infer: Infer | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
        draw: Callable[..., dict[str, Any]] | None = None,
        serve: Callable[..., Any] | None = None,
        tolerance: Mapping[str, float | tuple[float, float]] | None = None,
        example_params: Callable[..., dict[str, Any]] | None = None,
        example_inputs: Callable[[np.random.Generator, np.dtype], tuple[Any, ...]] | None = None,
        register: bool = True,
    ) -> None:
        for p in params:
            if p.name in ("rng", "mode") or p.name in {s.name for s in inputs}:
                raise OpError(f"{name}: parameter name {p.name!r} is taken (by the call's rng=/mode= or an input)")
        for s in outputs if len(outputs) > 1 else ():  # several outputs come back as an Outputs tuple
            if s.name in ("count", "index", "names", "as_dict"):
                raise OpError(f"{name}: output name {s.name!r} is taken (by the Outputs tuple's methods)")
        if (draw is None) != (serve is None):
            raise OpError(f"{name}: a random op declares both draw= and serve=")
        self.name = name
        self.doc = doc.strip()
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.params = tuple(params)
        self.reference = reference
        self.infer = infer
        self.check = check
        self.draw = draw
        self.serve = serve
        self.tolerance = dict(tolerance or {})
        self.example_params = example_params
        self.example_inputs = example_inputs
        self.kernels: dict[tuple[str, bool], Kernel] = {}
        self.module = getattr(reference, "__module__", None) or __name__
        if register:
            _registry.register(self)

    __doc__ = _DocDescriptor(__doc__)

    # -- declaration ---------------------------------------------------------------------------

    @property
    def is_random(self) -> bool:
        return self.draw is not None

    def kernel(self, device: str, *, batched: bool = False, host_inputs: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``fn`` as this op's kernel for ``device`` (``cpu`` or ``cuda``).

        ``host_inputs``: a CUDA kernel that reads its inputs on the host and returns GPU arrays
        (a decoder); it runs through :meth:`BoundOp.on_gpu`, as one call for one sample or a batch.
        """

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.kernels[(device, batched)] = Kernel(device, fn, batched, host_inputs)
            return fn

        return register

    def kernel_for(self, device: str, batched: bool = False) -> Kernel | None:
        return self.kernels.get((device, batched))

    def tolerance_for(self, dtype: np.dtype, expected: np.ndarray | None = None) -> float:
        """Max abs difference allowed from the reference for outputs of ``dtype``.

        A tolerance entry is an absolute number, or ``(atol, rtol)`` where ``rtol`` scales with the
        largest magnitude in ``expected`` (for float results whose error grows with the value range).
        """
        dt = np.dtype(dtype)
        default = 0.0 if dt.kind in "biu" else 1e-5
        entry = self.tolerance.get(dt.name, self.tolerance.get(dt.kind, default))
        if isinstance(entry, tuple):
            atol, rtol = entry
            peak = float(np.abs(expected).max()) if expected is not None and expected.size and expected.dtype != object else 0.0
            return float(atol) + float(rtol) * peak
        return float(entry)

    # -- introspection -------------------------------------------------------------------------

    @property
    def signature(self) -> str:
        ins = ", ".join(s.describe() for s in self.inputs)
        ps = ", ".join(p.name if p.required else f"{p.name}={p.default!r}" for p in self.params)
        outs = ", ".join(s.describe() for s in self.outputs)
        extra = ", rng=None, mode='train'" if self.is_random else ""
        return f"{self.name}({ins}{', *, ' + ps if ps else ''}{extra}) -> {outs}"

    def describe(self) -> str:
        lines = [self.signature, "", self.doc, ""]
        if self.params:
            lines.append("Parameters:")
            for p in self.params:
                default = "required" if p.required else f"default {p.default!r}"
                lines.append(f"  {p.name}: {p.kind.describe()}; {default}. {p.doc}".rstrip())
        kernels = sorted({k.device + (" (batched)" if k.batched else "") for k in self.kernels.values()})
        lines.append("Kernels: " + (", ".join(kernels) or "reference only"))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<op {self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_registry.get_op, (self.name, self.module))

    # -- binding and calling -------------------------------------------------------------------

    def validate_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Checked and normalised params with defaults filled in, or a ``ParamError``."""
        names = [p.name for p in self.params]
        for key in params:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; parameters are: {', '.join(names) or 'none'}"
                raise ParamError(f"{self.name}: unknown parameter {key!r}{hint}")
        out: dict[str, Any] = {}
        for p in self.params:
            value = params.get(p.name, p.default)
            if value is REQUIRED:
                raise ParamError(f"{self.name}: parameter {p.name!r} is required ({p.kind.describe()})")
            try:
                out[p.name] = p.kind.check(value)
            except ValueError as e:
                raise ParamError(f"{self.name}: parameter {p.name!r}: {e}") from None
        if self.check is not None:
            try:
                self.check(out)
            except ValueError as e:
                raise ParamError(f"{self.name}: {e}") from None
        return out

    def bind(self, **params: Any) -> BoundOp:
        """This op with validated parameters: a picklable callable over inputs only."""
        return BoundOp(self, self.validate_params(params))

    def __call__(self, *args: Any, rng: np.random.Generator | int | None = None, mode: Mode = "train", **kwargs: Any) -> Any:
        names = [s.name for s in self.inputs]
        if len(args) > len(names):
            raise InputError(f"{self.name} takes {len(names)} input(s) ({', '.join(names)}), got {len(args)}")
        given = dict(zip(names, args))
        for n in names[len(args):]:
            if n not in kwargs:
                raise InputError(f"{self.name}: missing input {n!r}")
            given[n] = kwargs.pop(n)
        return self.bind(**kwargs)(*(given[n] for n in names), rng=rng, mode=mode)


class BoundOp:
    """An op with its parameters fixed. Call it with the inputs (and ``rng``/``mode``)."""

    def __init__(self, op: Op, params: dict[str, Any]) -> None:
        self.op = op
        self.params = params

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"<{self.op.name}({ps})>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BoundOp, (self.op, self.params))

    def __call__(self, *inputs: Any, rng: np.random.Generator | int | None = None, mode: Mode = "train") -> Any:
        op = self.op
        if len(inputs) != len(op.inputs):
            raise InputError(f"{op.name} takes {len(op.inputs)} input(s), got {len(inputs)}")
        if mode not in ("train", "serve"):
            raise OpError(f"{op.name}: mode must be 'train' or 'serve', got {mode!r}")
        kinds = [_input_kind(op, spec, x) for spec, x in zip(op.inputs, inputs)]
        if "cuda" in kinds:
            return self._call_cuda(inputs)
        host = [_host(op, spec, x) for spec, x in zip(op.inputs, inputs)]
        batch, samples = _split_batch(op, host)
        gen = as_generator(rng, op.name) if op.is_random and mode == "train" else None
        wrap = from_host("torch" if "torch" in kinds else "numpy")
        batched = op.kernel_for("cpu", batched=True)
        if batch != "single" and batched is not None and op.infer is not None and not op.is_random:
            outs = self._run_batched(batched, host, samples, batch)
            values = [wrap(v) if isinstance(v, np.ndarray) else [wrap(a) for a in v] for v in outs]
        elif batch == "single":
            values = [wrap(v) for v in self._run_sample(samples[0], gen, mode)]
        elif batch == "dense":
            outs = self._run_dense(samples, gen, mode)  # stacked arrays, or lists where shapes differ
            values = [wrap(v) if isinstance(v, np.ndarray) else [wrap(a) for a in v] for v in outs]
        else:
            results = _per_sample(lambda s: self._run_sample(s, gen, mode), samples)
            values = [[wrap(r[k]) for r in results] for k in range(len(op.outputs))]
        return values[0] if len(values) == 1 else Outputs(values, [s.name for s in op.outputs])

    def apply(self, *inputs: Any, drawn: Mapping[str, Any]) -> Any:
        """Run a random op on one sample with given random choices (as its ``draw`` returns them).

        Replays an augmentation exactly, e.g. to compare it with another library given the same
        crop box, or to re-run a logged training sample.
        """
        op = self.op
        if not op.is_random:
            raise OpError(f"{op.name} is not random; call it directly")
        batch, samples = _split_batch(op, [_host(op, spec, x) for spec, x in zip(op.inputs, inputs)])
        if batch != "single":
            raise InputError(f"{op.name}.apply takes one sample, got a batch")
        wrap = from_host("torch" if any(_input_kind(op, s, x) == "torch" for s, x in zip(op.inputs, inputs)) else "numpy")
        values = [wrap(v) for v in self._kernel_call(samples[0], dict(drawn), None)]
        return values[0] if len(values) == 1 else Outputs(values, [s.name for s in op.outputs])

    def on_gpu(self, *inputs: Any, rng: np.random.Generator | int | None = None, mode: Mode = "train") -> Any:
        """Run with the outputs on the GPU: an op whose CUDA kernel reads host inputs
        (``image.decode``: nvJPEG) runs that kernel; any other op has its host inputs uploaded
        (as torch CUDA tensors where torch has a GPU) and runs its CUDA kernel."""
        op = self.op
        kernel = op.kernel_for("cuda")
        if kernel is not None and kernel.host_inputs:
            if len(inputs) != len(op.inputs):
                raise InputError(f"{op.name} takes {len(op.inputs)} input(s), got {len(inputs)}")
            return kernel.fn(*inputs, **self.params)
        moved = [[_device.upload(a) for a in x] if isinstance(x, list) else x if _device.is_device_array(x) else _device.upload(x)
                 for x in inputs]
        return self(*moved, rng=rng, mode=mode)

    # -- internals -----------------------------------------------------------------------------

    def _call_cuda(self, inputs: Sequence[Any]) -> Any:
        """Run the op's CUDA kernel on GPU arrays: outputs allocated as the caller's array type,
        the kernel launched on the caller's stream (see :mod:`._device`). A kernel always sees a
        dense batch (leading axis N): one sample arrives as a batch of one, a dense batch whole."""
        op = self.op
        if op.is_random:  # draws and serve mode on the GPU come with the CUDA kernels
            raise InputError(f"{op.name}: random ops do not run on GPU arrays yet; move the input to the host")
        if any(isinstance(x, (list, tuple)) for x in inputs):
            return self._call_cuda_ragged(inputs)
        kernel = op.kernel_for("cuda")
        if kernel is not None and kernel.host_inputs:
            raise InputError(f"{op.name} reads its input on the host (its GPU path returns GPU arrays: BoundOp.on_gpu); "
                             "move the input to the host")
        if kernel is None:
            raise InputError(
                f"{op.name} has no CUDA kernel; its input is on the GPU. "
                "Move it to the host (tensor.cpu() / cupy.asnumpy) or use an op with a CUDA kernel"
            )
        first = next(x for x in inputs if _device.is_device_array(x))
        if op.infer is None:
            with _device.launching(first):
                return kernel.fn(*(_device.as_kernel_array(x) for x in inputs), **self.params)
        metas = tuple(_device.meta(x) for x in inputs)
        # a dense batch (N first) runs in one launch; one sample is a batch of one to the kernel
        dense = any(m.ndim == spec.rank + 1 for m, spec in zip(metas, op.inputs))
        lead: tuple[int, ...] = ()  # the outputs' batch axis: none for one sample
        if dense:
            sizes = {m.shape[0] for m in metas}
            if len(sizes) > 1 or any(m.ndim != spec.rank + 1 for m, spec in zip(metas, op.inputs)):
                raise InputError(f"{op.name}: GPU inputs disagree on the batch: shapes {[list(m.shape) for m in metas]}")
            lead = (sizes.pop(),)
            metas = tuple(_device.Meta(m.shape[1:], m.dtype) for m in metas)
        _check_sample(op, metas, None)
        shapes = op.infer(*metas, **self.params)
        outs = [_device.empty_like(first, (*lead, *shape), np.dtype(dtype)) for shape, dtype in shapes]
        with _device.launching(first):
            ins = [_device.batch_view(x, dense) for x in inputs]
            views = [_device.batch_view(o, dense) for o in outs]
            kernel.fn(*ins, out=views[0] if len(views) == 1 else tuple(views), **self.params)
        return outs[0] if len(outs) == 1 else Outputs(outs, [s.name for s in op.outputs])

    def _call_cuda_ragged(self, inputs: Sequence[Any]) -> Any:
        """A ragged batch (lists of GPU arrays): one call of the op's batched CUDA kernel (CV-CUDA's
        "varshape": one launch for images of different sizes), else a launch per sample. Outputs
        are one dense batch where every sample's shapes agree, else lists (as on the CPU)."""
        op = self.op
        n = next(len(x) for x in inputs if isinstance(x, (list, tuple)))
        if any(isinstance(x, (list, tuple)) and len(x) != n for x in inputs):
            raise InputError(f"{op.name}: ragged inputs disagree on the batch: {[len(x) for x in inputs if isinstance(x, (list, tuple))]} items")
        samples = [tuple(x[i] if isinstance(x, (list, tuple)) else x for x in inputs) for i in range(n)]
        kernel, batched = op.kernel_for("cuda"), op.kernel_for("cuda", batched=True)
        if batched is not None and len({tuple(_device.meta(x).dtype for x in s) for s in samples}) > 1:
            batched = None  # a batched kernel takes the images as one tuple type: mixed dtypes go one by one
        if op.infer is None or (kernel is None and batched is None):
            results = [self._call_cuda(s) for s in samples]
            if len(op.outputs) == 1:
                return results
            return Outputs([[r[k] for r in results] for k in range(len(op.outputs))], [s.name for s in op.outputs])
        metas = [tuple(_device.meta(x) for x in s) for s in samples]
        for i, m in enumerate(metas):
            _check_sample(op, m, i)
        shapes = [op.infer(*m, **self.params) for m in metas]
        first = samples[0][0]
        dense = all(s == shapes[0] for s in shapes)
        outs: list[Any] = [
            _device.empty_like(first, (n, *shape), np.dtype(dtype)) if dense
            else [_device.empty_like(first, tuple(s[k][0]), np.dtype(s[k][1])) for s in shapes]
            for k, (shape, dtype) in enumerate(shapes[0])
        ]
        with _device.launching(first):
            if batched is not None:
                views = [_device.as_kernel_array(o) if dense else [_device.as_kernel_array(a) for a in o] for o in outs]
                ins = [[_device.as_kernel_array(a) for a in x] if isinstance(x, (list, tuple)) else _device.as_kernel_array(x)
                       for x in inputs]
                batched.fn(*ins, out=views[0] if len(views) == 1 else tuple(views), **self.params)
            else:
                assert kernel is not None
                for i, sample in enumerate(samples):
                    views = [_device.as_kernel_array(o)[i : i + 1] if dense else _device.batch_view(o[i], False) for o in outs]
                    kernel.fn(*(_device.batch_view(x, False) for x in sample), out=views[0] if len(views) == 1 else tuple(views),
                              **self.params)
        return outs[0] if len(outs) == 1 else Outputs(outs, [s.name for s in op.outputs])

    def _run_batched(self, kernel: Kernel, host: list[Any], samples: Sequence[tuple[Any, ...]], batch: str) -> list[Any]:
        """One call of a batched kernel for the whole batch, into dense or per-sample outputs."""
        op = self.op
        assert op.infer is not None
        metas = _metas(op, samples, [{}] * len(samples), self.params, batch == "dense")
        outs: tuple[Any, ...]
        if batch == "dense" and all(m == metas[0] for m in metas):
            outs = tuple(np.empty((len(samples), *shape), dtype) for shape, dtype in metas[0])
        else:
            outs = tuple([np.empty(m[k][0], m[k][1]) for m in metas] for k in range(len(op.outputs)))
        kernel.fn(*host, out=outs[0] if len(outs) == 1 else outs, **self.params)
        return list(outs)

    def _run_dense(self, samples: Sequence[tuple[Any, ...]], gen: np.random.Generator | None, mode: Mode) -> list[Any]:
        """Outputs for a dense batch: stacked arrays, written in place when shapes are known."""
        op = self.op
        if op.infer is not None and not (op.is_random and mode == "serve"):
            drawn = [op.draw(gen, *s, **self.params) if op.draw else {} for s in samples]
            metas = _metas(op, samples, drawn, self.params, not op.is_random)
            if all(m == metas[0] for m in metas):
                outs = tuple(np.empty((len(samples), *shape), dtype) for shape, dtype in metas[0])
                _per_sample(lambda i: self._kernel_call(samples[i], drawn[i], tuple(o[i] for o in outs)), range(len(samples)))
                return list(outs)
            results = _per_sample(lambda i: self._kernel_call(samples[i], drawn[i], None), range(len(samples)))
        else:
            results = _per_sample(lambda s: self._run_sample(s, gen, mode), samples)
        columns = [[r[k] for r in results] for k in range(len(op.outputs))]
        return [np.stack(c) if _same_shape(c) else c for c in columns]

    def _run_sample(self, sample: tuple[Any, ...], gen: np.random.Generator | None, mode: Mode) -> tuple[Any, ...]:
        op = self.op
        if op.is_random and mode == "serve":
            assert op.serve is not None
            return _as_tuple(op.serve(*sample, **self.params), len(op.outputs))
        drawn = op.draw(gen, *sample, **self.params) if op.draw is not None else {}
        return self._kernel_call(sample, drawn, None)

    def _kernel_call(self, sample: tuple[Any, ...], drawn: dict[str, Any], out: tuple[np.ndarray, ...] | None) -> tuple[Any, ...]:
        op = self.op
        kernel = op.kernel_for("cpu")
        n = len(op.outputs)
        if kernel is None or op.infer is None:
            fn = kernel.fn if kernel is not None else op.reference
            result = _as_tuple(fn(*sample, **self.params, **drawn), n)
            if out is not None:
                for o, r in zip(out, result):
                    o[...] = r
                return out
            return result
        if out is None:
            out = tuple(np.empty(shape, dtype) for shape, dtype in op.infer(*sample, **self.params, **drawn))
        kernel.fn(*sample, out=out[0] if n == 1 else out, **self.params, **drawn)
        return out


def _metas(op: Op, samples: Sequence[tuple[Any, ...]], drawn: list[dict[str, Any]], params: dict[str, Any], shared: bool) -> list[tuple[ShapeDtype, ...]]:
    """Output shapes and dtypes per sample; computed once when all samples share them (a dense
    batch of a deterministic op: same input shape, same params)."""
    assert op.infer is not None
    if shared and samples and not any(drawn):
        one = tuple(op.infer(*samples[0], **params))
        return [one] * len(samples)
    return [tuple(op.infer(*s, **params, **d)) for s, d in zip(samples, drawn)]


def _input_kind(op: Op, spec: TensorSpec, x: Any) -> str:
    """Where an input lives, or an ``InputError`` naming the op and input for what is no tensor."""
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    if not items or (isinstance(x, np.ndarray) and x.ndim == spec.rank + 1 and x.shape[0] == 0 and not spec.is_bytes):
        raise InputError(f"{op.name}: input {spec.name!r} is an empty batch")
    kinds = set()
    for i, item in enumerate(items):
        try:
            kinds.add(kind_of(item))
        except TypeError as e:
            where = f" (batch item {i})" if isinstance(x, (list, tuple)) else ""
            raise InputError(f"{op.name}: input {spec.name!r}{where}: {e}") from None
    if len(kinds) > 1 and "cuda" in kinds:
        raise InputError(f"{op.name}: input {spec.name!r} mixes GPU and host arrays in one batch")
    return "cuda" if "cuda" in kinds else ("torch" if "torch" in kinds else kinds.pop())


def _per_sample(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(x) for x in items]``, with the failing item's index added to an ``OpError``."""
    out = []
    for i, item in enumerate(items):
        try:
            out.append(fn(item))
        except OpError as e:
            raise type(e)(f"{e} (batch item {i} of {len(items)})") from e
    return out


def _as_tuple(result: Any, n: int) -> tuple[Any, ...]:
    return (result,) if n == 1 else tuple(result)


def _host(op: Op, spec: TensorSpec, x: Any) -> Any:
    try:
        return [to_host(v) for v in x] if isinstance(x, (list, tuple)) else to_host(x)
    except TypeError as e:  # e.g. a bfloat16 tensor, which has no NumPy view
        raise InputError(f"{op.name}: input {spec.name!r}: {e}") from None


class _Samples(Sequence[tuple[Any, ...]]):
    """The samples of a batch, one tuple of inputs each, made on demand (a dense batch of 64 rows
    that a batched kernel takes whole never needs 64 views)."""

    def __init__(self, per_input: list[Sequence[Any] | None], inputs: list[Any], count: int) -> None:
        self.per_input, self.inputs, self.n = per_input, inputs, count

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return tuple(items[i] if items is not None else x for items, x in zip(self.per_input, self.inputs))


def _split_batch(op: Op, inputs: list[Any]) -> tuple[str, Sequence[tuple[Any, ...]]]:
    """Classify the inputs as one sample, a dense batch or a ragged batch, and split them."""
    form = "single"
    n = None
    per_input: list[Sequence[Any] | None] = []
    for spec, x in zip(op.inputs, inputs):
        items: Sequence[Any] | None
        if isinstance(x, list):
            items, kind = x, "ragged"
        elif spec.is_bytes:
            single = is_bytes_like(x) or (isinstance(x, np.ndarray) and (x.dtype != BYTES or x.ndim == 0))
            # a BYTES tensor ([N] object array) is a dense batch; a list of bytes a ragged one
            items, kind = (None, "single") if single else (list(x), "dense" if isinstance(x, np.ndarray) else "ragged")
        elif isinstance(x, np.ndarray) and x.ndim == spec.rank + 1:
            items, kind = cast(Sequence[Any], x), "dense"  # indexed lazily: a view per sample when needed
        else:
            items, kind = None, "single"
        if items is not None:
            if n is not None and len(items) != n:
                raise InputError(f"{op.name}: input {spec.name!r} has a batch of {len(items)}, others have {n}")
            n = len(items)
            form = kind if form != "ragged" else form
        per_input.append(items)
    samples = _Samples(per_input, inputs, n if n is not None else 1)
    if form == "dense" and any(isinstance(x, list) for x in inputs):
        form = "ragged"
    # the samples of a dense batch share dtype and shape: checking the first checks them all
    objects = any(s.is_bytes for s in op.inputs)  # object arrays can hold anything: check each
    for i, s in enumerate([samples[0]] if form == "dense" and not objects else samples):
        _check_sample(op, s, None if form == "single" else i)
    return form, samples


def _check_sample(op: Op, sample: tuple[Any, ...], index: int | None) -> None:
    where = "" if index is None else f" (batch item {index})"
    for spec, x in zip(op.inputs, sample):
        if spec.is_bytes:
            if is_bytes_like(x) or (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 1):
                continue
            if isinstance(x, np.ndarray) and x.dtype == BYTES and x.ndim == 0 and is_bytes_like(x.item()):
                continue
            raise InputError(f"{op.name}: input {spec.name!r}{where} must be encoded bytes, got {_describe(x)}")
        if not isinstance(x, (np.ndarray, _device.Meta)):
            raise InputError(f"{op.name}: input {spec.name!r}{where} must be an array, got {type(x).__name__}")
        if x.ndim != spec.rank:
            raise InputError(
                f"{op.name}: input {spec.name!r}{where} must have shape [{' '.join(spec.shape)}] "
                f"(rank {spec.rank}, or {spec.rank + 1} for a batch), got shape {list(x.shape)}"
            )
        if spec.dtypes is not None and x.dtype not in spec.dtypes:
            allowed = ", ".join(dtype_name(d) for d in spec.dtypes)
            raise InputError(f"{op.name}: input {spec.name!r}{where} has dtype {x.dtype}; expected one of {allowed}")
        for axis, size in spec.fixed_dims().items():
            if x.shape[axis] != size:
                raise InputError(
                    f"{op.name}: input {spec.name!r}{where} must have shape [{' '.join(spec.shape)}], "
                    f"got {list(x.shape)}"
                )
        if 0 in x.shape:
            raise InputError(f"{op.name}: input {spec.name!r}{where} is empty (shape {list(x.shape)})")


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"an array of dtype {x.dtype} and shape {list(x.shape)}"
    return type(x).__name__


def _same_shape(arrays: list[Any]) -> bool:
    return all(isinstance(a, np.ndarray) and a.shape == arrays[0].shape and a.dtype == arrays[0].dtype for a in arrays)
