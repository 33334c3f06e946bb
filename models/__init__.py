"""Model steps and model serving: the model repository, model configs, backends (TorchScript,
torch.export, ONNX Runtime, Python factories), instances, the dynamic batcher and the sequence
batcher for stateful models.

    from twinpipe.models import ServedModel, load_repository
    repo = load_repository("models/")                      # <model>/config.yaml + <model>/<version>/<file>
    pipe = load_pipeline("classify.yaml", models=repo.model_infos())
    served = ServedModel(repo.get("tiny"))                 # instances + the batcher its config asks for
    out = await served.infer({"pixels": batch})
"""

from ._backends import FILES, TorchRunner, load_backend, resolve_device
from ._batcher import (
    BatchError,
    BatcherStats,
    BatchingPolicy,
    DynamicBatcher,
    QueueFullError,
    QueueTimeoutError,
    RequestError,
)
from ._config import ModelConfig, VersionPolicy, load_config
from ._instances import InstancePool
from ._onnx import OnnxRunner
from ._repository import LoadedModel, Repository, load_model, load_repository
from ._sequence import SequenceBatcher, SequenceError
from ._serving import InferInputError, ServedModel, ServedPipeline, check_inputs

__all__ = [
    "FILES",
    "BatchError",
    "BatcherStats",
    "BatchingPolicy",
    "DynamicBatcher",
    "InferInputError",
    "InstancePool",
    "LoadedModel",
    "ModelConfig",
    "OnnxRunner",
    "QueueFullError",
    "QueueTimeoutError",
    "Repository",
    "RequestError",
    "SequenceBatcher",
    "SequenceError",
    "ServedModel",
    "ServedPipeline",
    "TorchRunner",
    "VersionPolicy",
    "check_inputs",
    "load_backend",
    "load_config",
    "load_model",
    "load_repository",
    "resolve_device",
]
