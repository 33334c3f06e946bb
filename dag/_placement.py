"""Where each step of a plan runs: ``device: cpu | cuda | auto`` resolved to a device.

* An op step with ``cuda`` runs its CUDA kernel (validation made sure it has one); ``cpu`` its CPU
  kernel.
* An op step with ``auto`` runs on the CPU unless there is a GPU, the op has a CUDA kernel and its
  data is there: it reads a tensor made on the GPU, or every step reading its outputs runs on the
  GPU. Repeated until nothing changes, so a chain between two GPU steps joins them and a batch stays
  on the GPU from the first step that can take it to the last. A machine without a GPU runs ``auto``
  pipelines on the CPU, unchanged.
* A python step with ``cpu`` or ``cuda`` gets its inputs there; with ``auto`` as they come.
* Model and nested pipeline steps take their inputs as they come (``any``): a model moves them to
  the device its config names (a model on a GPU takes GPU tensors without a copy and gives its
  outputs on the GPU, so auto steps around it follow it there), a nested pipeline places its own
  steps.

Where a tensor's producer and its consumer disagree the plan records a :class:`~._plan.Copy`; the
executor makes it only if the value is not already there (an ``any`` step's outputs may be on
either side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from twinpipe.ops import _device, get_op

from ._resolved import ResolvedStep

__all__ = ["Device", "Placement", "cuda_usable", "gpu_present", "made_on", "move", "place", "reads_on", "to_host"]

Device = Literal["cpu", "cuda", "any"]
Placement = dict[str, Device]


def gpu_present() -> bool:
    """Whether ``auto`` may use a GPU: a real one (Numba's simulator does not count)."""
    return _device.gpu_present()


def cuda_usable() -> bool:
    """Whether ``device: cuda`` steps can run: a GPU, or Numba's CUDA simulator."""
    return _device.cuda_usable()


def _has_cuda_kernel(step: ResolvedStep) -> bool:
    return step.op_name is not None and get_op(step.op_name).kernel_for("cuda") is not None


def place(steps: Mapping[str, ResolvedStep], topo: Sequence[str], producers: Mapping[str, set[str]],
          consumers: Mapping[str, Sequence[str]], gpu: bool) -> Placement:
    """The device of every step in ``topo`` (``gpu``: whether ``auto`` may choose the GPU)."""
    devices: Placement = {}
    auto: list[str] = []
    for name in topo:
        spec = steps[name].spec
        if spec.kind == "op":
            if spec.device == "auto":
                auto.append(name)
            devices[name] = "cpu" if spec.device == "auto" else spec.device
        elif spec.kind == "python":
            devices[name] = "any" if spec.device == "auto" else spec.device
        else:
            devices[name] = "any"
    movable = [n for n in auto if gpu and _has_cuda_kernel(steps[n])]

    def on_gpu(name: str) -> bool:  # a model on a GPU takes and gives GPU tensors
        return made_on(steps[name], devices[name]) == "cuda"

    changed = True
    while changed:
        changed = False
        for name in movable:
            if devices[name] == "cuda":
                continue
            fed = any(on_gpu(p) for p in producers[name])
            readers = consumers[name]
            feeds = bool(readers) and all(on_gpu(c) for c in readers)
            if fed or feeds:
                devices[name] = "cuda"
                changed = True
    return devices


def made_on(step: ResolvedStep, device: Device) -> Device:
    """Where a step placed on ``device`` makes its outputs: there, except a model step (``any``),
    whose outputs are where its model runs."""
    return "cuda" if step.model_device == "cuda" else "cpu" if step.model_device == "cpu" else device


def reads_on(step: ResolvedStep, device: Device) -> Device:
    """Where a step placed on ``device`` wants its inputs: there, except an op on the GPU whose CUDA
    kernel reads host inputs (a decoder: the bytes stay on the host) and ``any`` steps."""
    return "any" if device == "cuda" and step.gpu_fn is not None else device


def move(value: Any, device: Device) -> Any:
    """``value`` on ``device`` (a copy only if it is not there already; lists item by item).

    To the GPU: NumPy arrays and torch CPU tensors (BYTES and other object arrays stay, the op
    they feed says what it takes). To the host: GPU arrays become NumPy arrays.
    """
    if isinstance(value, list):
        return [move(v, device) for v in value]
    on_gpu = _device.is_device_array(value)
    if device == "cuda":
        if on_gpu or not _uploadable(value):
            return value
        return _device.upload(value)
    if device == "cpu" and on_gpu:
        return _device.to_host_copy(value)
    return value


def to_host(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """A run's outputs with every GPU array copied to the host (what a server sends)."""
    return {k: move(v, "cpu") for k, v in outputs.items()}


def _uploadable(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return not value.dtype.hasobject and value.dtype.kind not in "SU"
    return type(value).__module__.startswith("torch") and hasattr(value, "pin_memory")
