"""The typed form of a pipeline file, every part carrying where it was written.

A pipeline file reads like this (the full reference is in README.md and ``twinpipe schema``)::

    name: imagenet_preprocess
    inputs:
      image: {datatype: BYTES, shape: [-1]}
    outputs:
      pixels: {datatype: FP32, shape: [-1, 3, 224, 224], from: pre.tensor}
    steps:
      decode:
        op: image.decode
        inputs: {data: image}
        params: {color: rgb}
      flip:
        op: image.random_flip
        mode: train                      # runs in train mode only
        inputs: {image: decode.image}
      pre:
        op: image.resize_crop_normalize
        inputs: {image: {from: flip.image, default: decode.image}}
        params: {size: 256, crop: 224}

A tensor reference is ``<pipeline input>`` or ``<step>.<output>``; ``{from: ..., default: ...}``
names a fallback for when the producing step did not run (``mode:`` or ``when:``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Diagnostic",
    "Location",
    "PipelineError",
    "PipelineSpec",
    "StepKind",
    "StepSpec",
    "TensorDecl",
    "TensorRef",
]

StepKind = Literal["op", "model", "pipeline", "python"]
STEP_KINDS: tuple[StepKind, ...] = ("op", "model", "pipeline", "python")


@dataclass(frozen=True)
class Location:
    """Where something was written: file, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a pipeline file: where, in which step, and what was expected vs found."""

    location: Location
    message: str
    step: str | None = None

    def __str__(self) -> str:
        where = f"step {self.step!r}: " if self.step else ""
        return f"{self.location}: {where}{self.message}"


class PipelineError(Exception):
    """A pipeline file is invalid; ``diagnostics`` lists every problem found, in file order."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.location.file, d.location.line, d.location.column))
        n = len(self.diagnostics)
        head = f"{n} error{'s' if n != 1 else ''} in pipeline"
        super().__init__(head + ":\n" + "\n".join(f"  {d}" for d in self.diagnostics))

    def __reduce__(self) -> tuple[type[PipelineError], tuple[list[Diagnostic]]]:
        # raised in a DataLoader or multiprocessing worker, it must cross back to the parent whole
        return (PipelineError, (self.diagnostics,))


@dataclass(frozen=True)
class TensorRef:
    """A reference to a tensor: a pipeline input (``step`` is None) or ``step.output``."""

    step: str | None
    name: str
    location: Location
    default: TensorRef | None = None

    def __str__(self) -> str:
        return self.name if self.step is None else f"{self.step}.{self.name}"


@dataclass(frozen=True)
class TensorDecl:
    """A declared tensor: a pipeline input or output, or a python step's output."""

    name: str
    datatype: str  # a KServe datatype name, e.g. "FP32", "BYTES"
    shape: tuple[int, ...]  # -1 for a dynamic dimension
    location: Location
    source: TensorRef | None = None  # pipeline outputs: the step output they are


@dataclass(frozen=True)
class StepSpec:
    """One step: exactly one of op / model / pipeline / python, with its inputs and params."""

    name: str
    kind: StepKind
    target: str  # op name, model name (optionally "name:version"), pipeline name or path, "module:function"
    inputs: dict[str, TensorRef]
    params: dict[str, Any]
    location: Location
    device: Literal["cpu", "cuda", "auto"] = "auto"
    mode: Literal["train", "serve"] | None = None  # None: runs in both modes
    when: TensorRef | None = None
    outputs: tuple[TensorDecl, ...] = ()  # declared outputs (python steps)
    locations: dict[str, Location] = field(default_factory=dict, compare=False)  # of keys: "params.size", …


@dataclass(frozen=True)
class PipelineSpec:
    """A parsed pipeline file, before validation against ops, models and types."""

    name: str
    path: str
    inputs: tuple[TensorDecl, ...]
    outputs: tuple[TensorDecl, ...]
    steps: tuple[StepSpec, ...]
    location: Location
    description: str = ""
    batching: dict[str, Any] | None = None

    def step(self, name: str) -> StepSpec:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)
