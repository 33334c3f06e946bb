"""The ONNX backend: ``<version>/model.onnx`` run by ONNX Runtime (the optional ``onnx`` extra).

:class:`OnnxRunner` has :class:`~twinpipe.models._backends.TorchRunner`'s call interface and rules:
``runner(**inputs) -> {output: array}`` with inputs by config name; with ``max_batch_size > 0`` a
single sample (the rank of the declared shape) gets a batch of one and its outputs are unbatched
again, and a batch above ``max_batch_size`` is an error; outputs come in the config's order.

Config tensors are matched to the model's graph inputs/outputs **by name** when the config's names
are exactly the graph's names (in any order); otherwise **by position** (the config's first input is
the graph's first input, ...). A name that the graph uses at another position is refused rather
than guessed. At load the counts, element types, ranks and fixed dimensions are checked against the
config, each error naming the model and tensor.

Inputs are not cast: an array whose dtype is not the config's datatype is an error. NumPy arrays
go to ONNX Runtime as they are (copied only when not C-contiguous). ``BYTES`` tensors are ONNX
``string`` tensors: ``bytes`` are decoded as UTF-8 on the way in and outputs are encoded back, so
callers see object arrays of ``bytes`` as with the other backends. ``BF16`` is not supported
(ONNX Runtime's Python API has no NumPy type for it).

``onnxruntime`` is imported only by :func:`load_onnx`, so twinpipe works without the extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twinpipe.dag import TensorDecl, dtype_of

from ._config import ModelConfig
from ._gather import gather_inputs

__all__ = ["ONNX_FILE", "OnnxRunner", "load_onnx"]

#: the file the onnx backend loads from a version folder
ONNX_FILE = "model.onnx"

#: config datatype → ONNX Runtime's element type string
_ORT_TYPES = {
    "BOOL": "tensor(bool)", "UINT8": "tensor(uint8)", "UINT16": "tensor(uint16)", "UINT32": "tensor(uint32)",
    "UINT64": "tensor(uint64)", "INT8": "tensor(int8)", "INT16": "tensor(int16)", "INT32": "tensor(int32)",
    "INT64": "tensor(int64)", "FP16": "tensor(float16)", "FP32": "tensor(float)", "FP64": "tensor(double)",
    "BYTES": "tensor(string)", "BF16": "tensor(bfloat16)",
}
_DATATYPE_OF = {v: k for k, v in _ORT_TYPES.items()}
_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
_MISSING = "backend onnx needs onnxruntime: pip install 'twinpipe[onnx]'"


def load_onnx(config: ModelConfig, version_dir: Path, device: str) -> OnnxRunner:
    """An :class:`OnnxRunner` for ``version_dir/model.onnx``.

    ``device`` is ``cpu``, ``cuda`` (CUDA execution provider, then CPU for the nodes it lacks) or
    ``auto`` (CUDA when this ONNX Runtime build has it). Raises ``ImportError`` without
    onnxruntime, ONNX Runtime's own error for a missing or corrupt file, and ``ValueError`` when
    the file disagrees with the config.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError(_MISSING) from e
    available = ort.get_available_providers()
    if device == "auto":
        device = "cuda" if _CUDA in available else "cpu"
    if device == "cuda":
        if _CUDA not in available:
            raise RuntimeError(f"model {config.name!r}: device cuda needs onnxruntime with {_CUDA} "
                               f"(pip install onnxruntime-gpu); this one has {', '.join(available)}")
        providers = [_CUDA, _CPU]
    elif device == "cpu":
        providers = [_CPU]
    else:
        raise ValueError(f"model {config.name!r}: device must be cpu, cuda or auto for backend onnx, not {device!r}")
    session = ort.InferenceSession(str(version_dir / ONNX_FILE), providers=providers)
    # ONNX Runtime falls back to CPU (with only a logged message) when CUDA cannot start
    if device == "cuda" and _CUDA not in session.get_providers():
        raise RuntimeError(f"model {config.name!r}: {_CUDA} could not start (check the CUDA/cuDNN libraries); "
                           f"the session got {', '.join(session.get_providers())}")
    return OnnxRunner(config, session, device)


class OnnxRunner:
    """Runs an ONNX Runtime session: ``runner(**inputs) -> {output: array}``, inputs by config name.

    With ``max_batch_size > 0`` the model takes a batch: a single sample (rank of the declared
    shape) is given a batch of one and its outputs are unbatched again.
    """

    def __init__(self, config: ModelConfig, session: Any, device: str) -> None:
        self.config = config
        self.session = session
        self.device = device
        # declared inputs then sequence-state inputs (and the same for outputs), as TorchRunner
        self._inputs, self._outputs = config.model_inputs, config.model_outputs
        self.input_names = tuple(d.name for d in self._inputs)
        self.output_names = tuple(d.name for d in self._outputs)
        #: config name → the graph's name for it
        self.graph_inputs = _match(config, "input", self._inputs, session.get_inputs())
        self.graph_outputs = _match(config, "output", self._outputs, session.get_outputs())
        self._feed_names = [self.graph_inputs[n] for n in self.input_names]
        self._fetch_names = [self.graph_outputs[n] for n in self.output_names]
        self._bytes_out = tuple(d.datatype == "BYTES" for d in self._outputs)

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        args, unbatch = gather_inputs(self.config, inputs)
        feed = {name: self._input(decl, np.asarray(x)) for decl, name, x in zip(self._inputs, self._feed_names, args)}
        values = self.session.run(self._fetch_names, feed)
        out = {n: _from_ort(v, b) for n, v, b in zip(self.output_names, values, self._bytes_out)}
        return {k: v[0] for k, v in out.items()} if unbatch else out

    def _input(self, decl: TensorDecl, x: np.ndarray) -> np.ndarray:
        if decl.datatype == "BYTES":
            if x.dtype.kind not in "OSU":
                raise TypeError(f"model {self.config.name!r} input {decl.name!r}: got a {x.dtype} array; config says BYTES")
            # ONNX strings are text: bytes would be fed as their repr ("b'..'")
            return np.vectorize(lambda s: s.decode() if isinstance(s, bytes) else str(s), otypes=[object])(x)
        want = dtype_of(decl.datatype)
        if x.dtype != want:
            raise TypeError(f"model {self.config.name!r} input {decl.name!r}: got a {x.dtype} array; config says "
                            f"{decl.datatype} ({want}) and the runner does not cast")
        return np.ascontiguousarray(x)  # no copy when it already is


def _from_ort(value: Any, as_bytes: bool) -> np.ndarray:
    arr = np.asarray(value)
    if as_bytes:
        return np.vectorize(lambda s: s.encode() if isinstance(s, str) else bytes(s), otypes=[object])(arr)
    return arr


def _match(config: ModelConfig, kind: str, decls: Sequence[TensorDecl], args: Sequence[Any]) -> dict[str, str]:
    """Config name → graph name (by name when the names agree, else by position), checking each pair."""
    model = f"model {config.name!r}"
    names = [d.name for d in decls]
    graph = [a.name for a in args]
    if len(decls) != len(args):
        raise ValueError(f"{model}: the config declares {len(decls)} {kind}(s) ({', '.join(names)}); "
                         f"{ONNX_FILE} has {len(args)} ({', '.join(graph)})")
    if sorted(names) == sorted(graph):
        pairs = [(d, args[graph.index(d.name)]) for d in decls]
    else:
        for i, n in enumerate(names):  # a shared name at another position: positional would swap them
            if n in graph and graph.index(n) != i:
                raise ValueError(f"{model} {kind} {n!r}: it is {kind} {i} in the config but {graph.index(n)} in "
                                 f"{ONNX_FILE}, and the names do not all agree ({', '.join(names)} vs "
                                 f"{', '.join(graph)}); use the graph's names or its order")
        pairs = list(zip(decls, args))
    for decl, arg in pairs:
        _check(config, kind, decl, arg)
    return {d.name: a.name for d, a in pairs}


def _check(config: ModelConfig, kind: str, decl: TensorDecl, arg: Any) -> None:
    where = f"model {config.name!r} {kind} {decl.name!r}"
    if arg.name != decl.name:
        where += f" ({ONNX_FILE} {kind} {arg.name!r})"
    found = _DATATYPE_OF.get(arg.type, arg.type)
    if found != decl.datatype:
        raise ValueError(f"{where}: config says {decl.datatype}, {ONNX_FILE} has {found}")
    if decl.datatype == "BF16":
        raise ValueError(f"{where}: BF16 is not supported by backend onnx (ONNX Runtime has no NumPy bfloat16)")
    shape = list(arg.shape or [])
    batched = config.max_batch_size > 0
    declared = [-1, *decl.shape] if batched else list(decl.shape)
    if not shape and declared:
        return  # ONNX Runtime reports an unknown rank as []: nothing to check
    if len(shape) != len(declared):
        what = "(batch, *shape)" if batched else "shape"
        raise ValueError(f"{where}: config {what} has rank {len(declared)} {_dims(declared)}; "
                         f"{ONNX_FILE} has rank {len(shape)} {_dims(shape)}")
    if batched and isinstance(shape[0], int) and shape[0] > 0 and not shape[0] == 1 == config.max_batch_size:
        raise ValueError(f"{where}: {ONNX_FILE} has a fixed batch dimension {shape[0]}, but max_batch_size "
                         f"{config.max_batch_size} needs it dynamic (export with a dynamic axis 0)")
    for i, (want, have) in enumerate(zip(declared, shape)):
        if want > 0 and isinstance(have, int) and have > 0 and want != have:
            raise ValueError(f"{where}: dimension {i} is {want} in the config, {have} in {ONNX_FILE} "
                             f"(config {_dims(declared)}, {ONNX_FILE} {_dims(shape)})")


def _dims(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
