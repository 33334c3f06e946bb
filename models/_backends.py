"""Backends: load one model version and run it on NumPy inputs.

Each backend gives a torch callable (TorchScript ``model.pt``, a ``torch.export`` program
``model.pt2``, or what a Python ``module:function`` factory returns); :class:`TorchRunner` wraps
it: NumPy → torch zero-copy (``torch.from_numpy``), run under ``torch.inference_mode()``,
outputs (one tensor, a tuple/list in the config's order, or a dict by name) → NumPy.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._config import ModelConfig
from ._gather import gather_inputs
from ._onnx import ONNX_FILE, OnnxRunner, load_onnx  # onnxruntime itself is imported on first use

__all__ = ["FILES", "TorchRunner", "load_backend", "resolve_device"]

#: the file each backend loads from a version folder (python: none needed)
FILES = {"torchscript": "model.pt", "torch_export": "model.pt2", "onnx": ONNX_FILE}


def resolve_device(config: ModelConfig) -> torch.device:
    """``instances.device`` if set, else ``device``; ``auto`` is CUDA when available."""
    want = config.instance_device or config.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(want)


def load_backend(config: ModelConfig, version_dir: Path) -> TorchRunner | OnnxRunner:
    """Load ``config``'s model from ``version_dir``; raises with the cause if it cannot."""
    if config.backend == "onnx":  # onnxruntime picks its providers: auto is CUDA if its build has it
        return load_onnx(config, version_dir, config.instance_device or config.device)
    device = resolve_device(config)
    model: Callable[..., Any]
    if config.backend == "torchscript":
        file = str(version_dir / FILES["torchscript"])
        with warnings.catch_warnings():  # torch ≥ 2.9 deprecates TorchScript; .pt files still load
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(file, map_location=device)  # type: ignore[no-untyped-call]
    elif config.backend == "torch_export":
        model = torch.export.load(str(version_dir / FILES["torch_export"])).module().to(device)
    else:
        model = _factory(config, version_dir)()
        if not callable(model):
            raise TypeError(f"factory {config.factory!r} returned {type(model).__name__}, not an nn.Module or callable")
    # exported programs' modules do not support .eval(); they are traced in inference form
    if isinstance(model, torch.nn.Module) and config.backend != "torch_export":
        model = model.to(device).eval()
    return TorchRunner(config, model, device)


def _factory(config: ModelConfig, version_dir: Path) -> Callable[[], Any]:
    """The factory function: ``<version>/<module>.py`` if it exists, else an importable module."""
    assert config.factory is not None
    module_name, func = config.factory.split(":")
    local = version_dir / (module_name.replace(".", "/") + ".py")
    if local.is_file():
        unique = f"_twinpipe_model_{config.name}_{version_dir.name}_{module_name}".replace(".", "_").replace("-", "_")
        spec = importlib.util.spec_from_file_location(unique, local)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    fn = getattr(module, func, None)
    if fn is None:
        raise AttributeError(f"factory {config.factory!r}: module {module_name!r} has no {func!r}")
    return fn


def _to_torch(x: Any, datatype: str, device: torch.device) -> Any:
    if type(x) is not np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.to(device)
        if hasattr(x, "__cuda_array_interface__"):  # a CuPy or Numba GPU array (a GPU pipeline step's): no copy
            return torch.as_tensor(x, device="cuda").to(device)
        if type(x).__module__.startswith("numba.cuda"):  # Numba's CUDA simulator's arrays live on the host
            x = x.copy_to_host()
        x = np.asarray(x)
    if x.dtype.hasobject:
        return x  # BYTES: no torch dtype; a python backend gets the array as is
    if not x.flags.writeable:
        x = x.copy()  # torch.from_numpy needs a writeable buffer
    t = torch.from_numpy(x)
    if datatype == "BF16":
        t = t.view(torch.bfloat16)
    return t if device.type == "cpu" else t.to(device)  # from_numpy is already on the CPU


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bfloat16:
            x = x.view(torch.uint16) if hasattr(torch, "uint16") else x.float()
        return x.detach().cpu().numpy()  # .cpu() of a CPU tensor is the tensor itself
    return np.asarray(x)


def _detached(x: Any) -> Any:
    return x.detach() if isinstance(x, torch.Tensor) else x


_END = object()


class TorchRunner:
    """Runs a loaded model: ``runner(**inputs) -> {output: array}``, inputs by config name.

    With ``max_batch_size > 0`` the model takes a batch: a single sample (rank of the declared
    shape) is given a batch of one and its outputs are unbatched again.
    """

    def __init__(self, config: ModelConfig, model: Callable[..., Any], device: torch.device) -> None:
        self.config = config
        self.model = model
        self.device = device
        self.input_names = tuple(d.name for d in config.model_inputs)
        self.output_names = tuple(d.name for d in config.model_outputs)
        self._datatypes = tuple(d.datatype for d in config.model_inputs)
        # a scripted module has no Python hooks to run: its forward directly (a microsecond a call)
        self._forward = model.forward if isinstance(model, torch.jit.ScriptModule) else model
        # each instance on a GPU queues its work on its own stream, so instances overlap
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None  # type: ignore[no-untyped-call]

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        return self._run(inputs, True)

    def keep_on_device(self, **inputs: Any) -> dict[str, Any]:
        """As a call, with the outputs left where the model made them (torch tensors on its GPU):
        what a pipeline step on a GPU model gets, so its next GPU steps take them without a copy.
        The caller's current stream waits for the model's."""
        return self._run(inputs, False)

    def _run(self, inputs: Mapping[str, Any], host: bool) -> dict[str, Any]:
        args, unbatch = gather_inputs(self.config, inputs)
        # what torch.inference_mode() enters, without its Python wrapper (a microsecond a call: a
        # tenth of a tiny model's whole request); the mode ends when the guard is deleted
        guard = torch._C._InferenceMode(True)
        try:
            if self.stream is None:
                if len(args) == 1:  # most models: one input, no list to build
                    result = self._forward(_to_torch(args[0], self._datatypes[0], self.device))
                else:
                    result = self._forward(*[_to_torch(x, t, self.device) for x, t in zip(args, self._datatypes)])
                out = self._name_outputs(result, host)
            else:
                with torch.cuda.stream(self.stream):
                    tensors = [_to_torch(x, t, self.device) for x, t in zip(args, self._datatypes)]
                    out = self._name_outputs(self._forward(*tensors), host)  # to NumPy on this stream: waits for it
                if not host:  # the caller's stream orders after the model's; the memory stays until it is done
                    caller = torch.cuda.current_stream(self.device)
                    caller.wait_stream(self.stream)
                    for v in out.values():
                        if isinstance(v, torch.Tensor) and v.is_cuda:
                            v.record_stream(caller)
        finally:
            del guard
        return {k: v[0] for k, v in out.items()} if unbatch else out

    def _name_outputs(self, result: Any, host: bool = True) -> dict[str, Any]:
        names = self.output_names
        if len(names) == 1 and isinstance(result, torch.Tensor):  # most models: one tensor out
            return {names[0]: _to_numpy(result) if host else result.detach()}
        return self._name_all(result, names, host)

    def responses(self, **inputs: Any) -> Generator[dict[str, np.ndarray], None, None]:
        """A decoupled model's responses to one request, one per item its call yields; each step
        of the model's generator runs in inference mode. Closing this closes the model's generator."""
        args, unbatch = gather_inputs(self.config, inputs)
        guard = torch._C._InferenceMode(True)
        try:
            result = self._forward(*[_to_torch(x, t, self.device) for x, t in zip(args, self._datatypes)])
        finally:
            del guard
        if isinstance(result, dict | torch.Tensor | np.ndarray) or not isinstance(result, Iterable):
            raise ValueError(f"model {self.config.name!r} is decoupled: its call must return an iterable of responses "
                             f"(e.g. be a generator), it returned {type(result).__name__}")
        items = iter(result)
        try:
            while True:
                guard = torch._C._InferenceMode(True)
                try:
                    item = next(items, _END)
                    if item is _END:
                        return
                    out = self._name_outputs(item)
                finally:
                    del guard
                yield {k: v[0] for k, v in out.items()} if unbatch else out
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # the model's own cleanup (its finally blocks) runs now, not at garbage collection

    def _name_all(self, result: Any, names: tuple[str, ...], host: bool = True) -> dict[str, Any]:
        conv = _to_numpy if host else _detached
        if isinstance(result, Iterator):
            raise ValueError(f"model {self.config.name!r} returned {type(result).__name__}; a model that answers with "
                             "several responses must say decoupled: true in its config")
        if isinstance(result, dict):
            missing = [n for n in names if n not in result]
            if missing:
                raise ValueError(f"model {self.config.name!r} returned no {', '.join(missing)} (it gave {', '.join(map(str, result))})")
            return {n: conv(result[n]) for n in names}
        values = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(values) != len(names):
            raise ValueError(f"model {self.config.name!r} returned {len(values)} output(s); the config declares {len(names)}: {', '.join(names)}")
        return {n: conv(v) for n, v in zip(names, values)}
