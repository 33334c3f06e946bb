"""Pipelines: the YAML format, validation with source locations, the graph, the compiled plan,
the executor, and the training-side transforms.

    from twinpipe.dag import load_pipeline
    pipe = load_pipeline("imagenet_preprocess")     # a shipped name, or a path to a .yaml file
    pixels = pipe(image=jpeg_bytes)["pixels"]       # serve mode
"""

from ._context import StepContext
from ._datatypes import DATATYPES, datatype_of, dtype_of
from ._executor import Executor, PipelineInputError, RunStats, StepError, StreamingError
from ._load import load_spec
from ._pipeline import DEFAULT_SEARCH_PATHS, Pipeline, find_pipeline, load_pipeline
from ._placement import to_host
from ._plan import Plan, PlanError, compile_plan
from ._render import to_dot, to_mermaid, to_png
from ._resolved import ModelInfo, ResolvedStep, TensorType, ValidPipeline
from ._schema import json_schema
from ._spec import Diagnostic, Location, PipelineError, PipelineSpec, StepSpec, TensorDecl, TensorRef
from ._transform import BatchTransform, PipelineDataset, Transform, sample_seed
from ._validate import check, validate

__all__ = [
    "DATATYPES",
    "DEFAULT_SEARCH_PATHS",
    "BatchTransform",
    "Diagnostic",
    "Executor",
    "Location",
    "ModelInfo",
    "Pipeline",
    "PipelineDataset",
    "PipelineError",
    "PipelineInputError",
    "PipelineSpec",
    "Plan",
    "PlanError",
    "ResolvedStep",
    "RunStats",
    "StepContext",
    "StepError",
    "StepSpec",
    "StreamingError",
    "TensorDecl",
    "TensorRef",
    "TensorType",
    "Transform",
    "ValidPipeline",
    "check",
    "compile_plan",
    "datatype_of",
    "dtype_of",
    "find_pipeline",
    "json_schema",
    "load_pipeline",
    "load_spec",
    "sample_seed",
    "to_dot",
    "to_host",
    "to_mermaid",
    "to_png",
    "validate",
]
