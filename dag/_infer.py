"""Static types: propagate dtypes and shapes through a pipeline before anything runs.

Shapes here are **per sample**: a declared shape's first dimension is the batch (always -1),
so a pipeline input declared ``UINT8 [-1, -1, -1, 3]`` is a ``uint8[? ? 3]`` sample, which is
what an op's ``H W C`` input spec describes. Model and nested-pipeline declarations are read the
same way.

An op step's outputs come from the op's ``infer`` function, called on probe arrays
(``np.empty``) built from its input types: unknown dimensions get two different stand-in sizes,
and an output dimension that comes out the same from both probes is static. Where a stand-in
size makes the op refuse (``normalize`` with three means needs three channels), each unknown
dimension is tried at 1 to 4 instead, so the op's own constraint fixes it. Ops without ``infer``
(``decode``) give what their output spec declares. A probe that fails on fully known inputs is a
real error and is reported with the op's own message.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinpipe.ops import Op, TensorSpec

from ._datatypes import DATATYPES, datatype_of, dtype_of
from ._resolved import TensorType
from ._spec import Diagnostic, Location, PipelineSpec, TensorDecl, TensorRef

__all__ = ["StepSignature", "decl_type", "infer_types"]

# stand-in sizes for unknown dimensions: divisible by 2, 3, 8 (YUV frames, strides) and with
# different aspect ratios in the two probes, so shape arithmetic cannot hide a dynamic dimension
_PROBES = ((96, 144, 192, 240), (168, 120, 312, 264))
_CANDIDATES = (1, 2, 3, 4)


@dataclass(frozen=True)
class StepSignature:
    """What type inference needs of a resolved step.

    ``what`` names it in messages ("image.resize", "model 'resnet'"); ``op`` and ``params`` (the
    validated ones) for op steps; ``inputs``: declarations its inputs must match (model and
    pipeline steps; None: not checked); ``outputs``: declared outputs (model, pipeline, python).
    """

    what: str
    op: Op | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[TensorDecl, ...] | None = None
    outputs: tuple[TensorDecl, ...] = ()


def decl_type(decl: TensorDecl) -> TensorType:
    """The per-sample type of a declaration (its batch dimension dropped)."""
    return TensorType(dtype_of(decl.datatype), tuple(decl.shape[1:]))


def infer_types(spec: PipelineSpec, signatures: Mapping[str, StepSignature], order: Sequence[str]) -> tuple[dict[str, TensorType], list[Diagnostic]]:
    """Types of every tensor (``"<input>"``, ``"<step>.<output>"``) and the mismatches found.

    ``order`` is a topological order of the steps; steps without a signature (they failed to
    resolve, reported elsewhere) leave their outputs untyped and are not checked.
    """
    return _Inference(spec, signatures).run(order)


def _describe(t: TensorType) -> str:
    """A per-sample type in KServe terms: ``FP32 [-1, 3, 224, 224]``."""
    dt = "?" if t.dtype is None else _datatype_name(t.dtype)
    dims = "[-1, ...]" if t.shape is None else str([-1, *t.shape])
    return f"{dt} {dims}"


def _datatype_name(dtype: np.dtype) -> str:
    try:
        return datatype_of(dtype)
    except KeyError:
        return dtype.name


def _decl_text(decl: TensorDecl) -> str:
    return f"{decl.datatype} {list(decl.shape)}"


def _spec_dims(spec: TensorSpec) -> tuple[int, ...]:
    return tuple(int(d) if d.isdigit() else -1 for d in spec.shape)


def _spec_type(spec: TensorSpec) -> TensorType:
    dtype = spec.dtypes[0] if spec.dtypes is not None and len(spec.dtypes) == 1 else None
    return TensorType(dtype, _spec_dims(spec))


def _merge(types: Sequence[TensorType]) -> TensorType:
    """What several possible types have in common (dims that differ become -1)."""
    dtypes = {t.dtype for t in types}
    shapes = {t.shape for t in types}
    dtype = dtypes.pop() if len(dtypes) == 1 else None
    ranks = {None if s is None else len(s) for s in shapes}
    if len(ranks) != 1 or None in ranks:
        return TensorType(dtype, None)
    dims = tuple(ds[0] if len(set(ds)) == 1 else -1 for ds in zip(*[s for s in shapes if s is not None]))
    return TensorType(dtype, dims)


class _Inference:
    def __init__(self, spec: PipelineSpec, signatures: Mapping[str, StepSignature]) -> None:
        self.spec = spec
        self.signatures = signatures
        self.types: dict[str, TensorType] = {d.name: decl_type(d) for d in spec.inputs}
        self.diagnostics: list[Diagnostic] = []

    def error(self, location: Location, message: str, step: str | None) -> None:
        self.diagnostics.append(Diagnostic(location, message, step))

    def run(self, order: Sequence[str]) -> tuple[dict[str, TensorType], list[Diagnostic]]:
        for name in order:
            step = self.spec.step(name)
            sig = self.signatures.get(name)
            if sig is None:
                continue
            if step.when is not None:
                self.check_when(step.when, name)
            found = {arg: self.ref_type(ref, name) for arg, ref in step.inputs.items()}
            if sig.op is not None:
                outs = self.op_step(sig, step.inputs, found, name)
            else:
                if sig.inputs is not None:
                    for decl in sig.inputs:
                        if decl.name in step.inputs:
                            ref = step.inputs[decl.name]
                            self.check_decl(found[decl.name], decl, ref, f"input {decl.name!r} of {sig.what}", name)
                outs = {d.name: decl_type(d) for d in sig.outputs}
            for out, t in outs.items():
                self.types[f"{name}.{out}"] = t
        for decl in self.spec.outputs:
            if decl.source is not None:
                self.check_decl(self.ref_type(decl.source, None), decl, decl.source, f"output {decl.name!r}", None)
        return self.types, self.diagnostics

    # -- references ----------------------------------------------------------------------------

    def ref_type(self, ref: TensorRef, step: str | None) -> TensorType | None:
        """The type of a reference; with a default, what both have in common (reporting a clash)."""
        t = self.types.get(str(ref))
        if ref.default is None:
            return t
        d = self.ref_type(ref.default, step)
        if t is None or d is None:
            return t or d
        clash = (t.dtype is not None and d.dtype is not None and t.dtype != d.dtype) or (
            t.shape is not None and d.shape is not None and len(t.shape) != len(d.shape)
        )
        if clash:
            self.error(ref.default.location, f"the default {ref.default} is {_describe(d)} but {ref} is {_describe(t)}; "
                       "they must have the same datatype and rank", step)
        return _merge([t, d])

    @staticmethod
    def source(ref: TensorRef) -> str:
        return f"pipeline input {ref.name!r}" if ref.step is None else f"step {ref.step!r}"

    def check_when(self, ref: TensorRef, step: str) -> None:
        t = self.types.get(str(ref))
        if t is not None and t.dtype is not None and t.dtype != np.dtype(np.bool_):
            self.error(ref.location, f"when: must name a BOOL tensor, found {_describe(t)} from {self.source(ref)}", step)

    def check_decl(self, t: TensorType | None, decl: TensorDecl, ref: TensorRef, what: str, step: str | None) -> None:
        """A tensor against a declaration (datatype, rank, static dims), reported at ``ref``."""
        if t is None:
            return
        want = decl_type(decl)
        problem = None
        if t.dtype is not None and t.dtype != want.dtype:
            problem = ""
        elif t.shape is not None and want.shape is not None:
            if len(t.shape) != len(want.shape):
                problem = ""
            for i, (a, b) in enumerate(zip(t.shape, want.shape)):
                if problem is None and a >= 0 and b >= 0 and a != b:
                    problem = f" (dimension {i + 1} is {a}, not {b})"
        if problem is not None:
            found = f"found {_describe(t)} from {self.source(ref)}{problem}"
            self.error(ref.location, f"{what}: expected {_decl_text(decl)}, {found}", step)

    # -- op steps ------------------------------------------------------------------------------

    def op_step(self, sig: StepSignature, refs: Mapping[str, TensorRef], found: Mapping[str, TensorType | None], step: str) -> dict[str, TensorType]:
        op = sig.op
        assert op is not None
        ok = True
        symbols: dict[str, tuple[int, str]] = {}
        inputs: list[TensorType] = []
        for spec in op.inputs:
            ref, t = refs.get(spec.name), found.get(spec.name)
            if ref is None or t is None:
                ok = False  # missing (reported) or untyped: nothing to check or probe with
                continue
            problem = self.check_spec(op, spec, t)
            if problem is None:
                problem = self.check_symbols(spec, t, symbols)
            if problem is not None:
                self.error(ref.location, f"input {spec.name!r} of {op.name}: {problem}, found {t} from {self.source(ref)}", step)
                ok = False
            inputs.append(t)
        fallback = {s.name: _spec_type(s) for s in op.outputs}
        if not ok or op.infer is None or any(s.is_bytes for s in op.inputs):
            return fallback
        outs, error = _probe(op, sig.params, inputs)
        if error is not None:
            first = refs[op.inputs[0].name]
            text = error if error.startswith(op.name) else f"{op.name}: {error}"
            self.error(first.location, f"{text} (input {_input_text(inputs)} from {self.source(first)})", step)
        return fallback if outs is None else dict(zip((s.name for s in op.outputs), outs))

    @staticmethod
    def check_spec(op: Op, spec: TensorSpec, t: TensorType) -> str | None:
        if spec.is_bytes:
            # encoded payloads: one BYTES element per sample, or a UINT8 buffer per sample
            if (t.dtype is None or t.dtype == DATATYPES["BYTES"]) and (t.shape is None or len(t.shape) == 0):
                return None
            if t.dtype == np.dtype(np.uint8) and (t.shape is None or len(t.shape) == 1):
                return None
            return "expected encoded bytes (BYTES [-1], one element per sample)"
        if t.dtype is not None and spec.dtypes is not None and t.dtype not in spec.dtypes:
            allowed = ", ".join("bytes" if d == DATATYPES["BYTES"] else d.name for d in spec.dtypes)
            return f"expected one of {allowed}"
        if t.shape is not None and len(t.shape) != spec.rank:
            return f"expected rank {spec.rank} [{' '.join(spec.shape)}] per sample"
        if t.shape is not None:
            for axis, size in spec.fixed_dims().items():
                if t.shape[axis] >= 0 and t.shape[axis] != size:
                    return f"expected shape [{' '.join(spec.shape)}]"
        return None

    @staticmethod
    def check_symbols(spec: TensorSpec, t: TensorType, symbols: dict[str, tuple[int, str]]) -> str | None:
        """Dimensions that several inputs name alike (``H`` of two images) must agree."""
        if t.shape is None:
            return None
        for sym, size in zip(spec.shape, t.shape):
            if sym.isdigit() or size < 0:
                continue
            if sym in symbols and symbols[sym][0] != size:
                return f"dimension {sym} must equal {sym} of input {symbols[sym][1]!r} ({symbols[sym][0]})"
            symbols.setdefault(sym, (size, spec.name))
        return None


def _input_text(inputs: Sequence[TensorType]) -> str:
    return ", ".join(str(t) for t in inputs)


def _probe(op: Op, params: Mapping[str, Any], inputs: Sequence[TensorType]) -> tuple[list[TensorType] | None, str | None]:
    """The op's output types from its ``infer`` on stand-in arrays, or None and the op's message
    when every probe failed (None, None: nothing to probe with)."""
    assert op.infer is not None
    infer = op.infer
    shapes = [t.shape if t.shape is not None else (-1,) * s.rank for t, s in zip(inputs, op.inputs)]
    unknown = [(i, a) for i, shape in enumerate(shapes) for a, d in enumerate(shape) if d < 0]
    options = []
    for t, s in zip(inputs, op.inputs):
        if t.dtype is not None:
            options.append([t.dtype])
        elif s.dtypes is not None:
            options.append(list(s.dtypes))
        else:
            return None, None
    combos = list(itertools.product(*options))

    def attempt(dtypes: Sequence[np.dtype], fixed: Mapping[int, int]) -> list[list[tuple[tuple[int, ...], np.dtype]]]:
        runs = []
        for probe in _PROBES:
            arrays = []
            for i, (shape, dt) in enumerate(zip(shapes, dtypes)):
                dims = list(shape)
                for u, (j, a) in enumerate(unknown):
                    if j == i:
                        dims[a] = fixed.get(u, probe[u % len(probe)])
                arrays.append(np.empty(dims, dt))
            runs.append([(tuple(int(n) for n in s), np.dtype(d)) for s, d in infer(*arrays, **params)])
        return runs

    results: list[list[tuple[tuple[int, ...], np.dtype]]] = []
    error: str | None = None
    for dts in combos:
        try:
            results.extend(attempt(dts, {}))
        except Exception as e:  # the op's own complaint, reported if nothing works
            error = error or str(e)
    for u in range(len(unknown) if not results else 0):
        for value, dts in itertools.product(_CANDIDATES, combos):
            try:
                results.extend(attempt(dts, {u: value}))
            except Exception:  # a stand-in the op refuses: try the next
                continue
        if results:
            break
    if not results:
        return None, error
    types = [_merge([TensorType(run[k][1], run[k][0]) for run in results]) for k in range(len(op.outputs))]
    return types, None
