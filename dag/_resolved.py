"""A validated pipeline: every step resolved to what runs it, every tensor typed.

This is what validation hands to the planner: nothing in it can fail to resolve any more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from twinpipe.ops import BoundOp, Outputs

from ._spec import PipelineSpec, StepSpec, TensorDecl

__all__ = ["ModelInfo", "ResolvedStep", "TensorType", "ValidPipeline", "op_step_fn"]


@dataclass(frozen=True)
class TensorType:
    """What static inference knows of a tensor: dtype (None: not known statically) and shape.

    ``shape`` is None when even the rank is unknown; a dimension of -1 is dynamic. Shapes are per
    sample (without the batch dimension).
    """

    dtype: np.dtype | None
    shape: tuple[int, ...] | None

    def __str__(self) -> str:
        dt = "?" if self.dtype is None else ("bytes" if self.dtype == np.dtype(object) else self.dtype.name)
        dims = "?" if self.shape is None else " ".join("?" if d < 0 else str(d) for d in self.shape)
        return f"{dt}[{dims}]"


@dataclass(frozen=True)
class ResolvedStep:
    """A step and what runs it.

    ``fn`` is called with the step's inputs as keyword arguments (argument name → value) plus
    ``rng`` and ``mode`` for random ops, and returns a dict of output name → value. For an op step
    it wraps the bound op; model, pipeline and python steps get theirs from later layers.
    """

    spec: StepSpec
    fn: Callable[..., dict[str, Any]] | None
    outputs: tuple[str, ...]
    is_random: bool = False
    op_name: str | None = None
    nested: ValidPipeline | None = None  # pipeline steps: the validated inner pipeline
    streams: bool = False  # a python step that yields any number of results (a generator)
    gpu_fn: Callable[..., dict[str, Any]] | None = None  # an op step on the GPU whose CUDA kernel reads host inputs
    model_device: str | None = None  # a model step: where its model runs ("cuda": it takes and gives GPU tensors)


    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class ValidPipeline:
    """A pipeline that passed validation: resolved steps in file order, typed tensors, the graph.

    ``types`` maps ``"<input>"`` and ``"<step>.<output>"`` to their inferred types; ``graph`` has
    a node per step (and per pipeline input, named ``"input:<name>"``) and an edge per data or
    ``when`` dependency, labelled with the tensor it carries.
    """

    spec: PipelineSpec
    steps: tuple[ResolvedStep, ...]
    types: dict[str, TensorType]
    graph: nx.DiGraph

    @property
    def streaming_step(self) -> str | None:
        """The step whose results stream (a generator python step), if any: then the pipeline
        answers a request with one response per result."""
        return next((s.name for s in self.steps if s.streams), None)

    def step(self, name: str) -> ResolvedStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass(frozen=True)
class ModelInfo:
    """What validation needs of a model (the model layer provides these): its declared tensors
    and, once loaded, the callable that runs it (``fn(**inputs) -> {output: value}``)."""

    name: str
    inputs: tuple[TensorDecl, ...]
    outputs: tuple[TensorDecl, ...]
    fn: Callable[..., dict[str, Any]] | None = None
    device: str | None = None  # where the model runs ("cpu" / "cuda"), once loaded


def op_step_fn(bound: BoundOp, *, gpu: bool = False) -> Callable[..., dict[str, Any]]:
    """An op step's callable: keyword inputs (+ ``rng``, ``mode``) → ``{output name: value}``
    (``gpu``: through :meth:`BoundOp.on_gpu`, for an op whose CUDA kernel reads host inputs)."""
    names = [s.name for s in bound.op.inputs]
    outs = [s.name for s in bound.op.outputs]
    call = bound.on_gpu if gpu else bound

    def run(*, rng: Any = None, mode: Any = "train", **inputs: Any) -> dict[str, Any]:
        result = call(*(inputs[n] for n in names), rng=rng, mode=mode)
        if isinstance(result, Outputs):
            return dict(zip(outs, result))
        return {outs[0]: result}

    return run
