"""Model steps: the model repository, model configs and backends (TorchScript, torch.export,
Python factories).

    from twinpipe.models import load_repository
    repo = load_repository("models/")                      # <model>/config.yaml + <model>/<version>/<file>
    pipe = load_pipeline("classify.yaml", models=repo.model_infos())
"""

from ._backends import FILES, TorchRunner, load_backend, resolve_device
from ._config import ModelConfig, VersionPolicy, load_config
from ._repository import LoadedModel, Repository, load_repository

__all__ = [
    "FILES",
    "LoadedModel",
    "ModelConfig",
    "Repository",
    "TorchRunner",
    "VersionPolicy",
    "load_backend",
    "load_config",
    "load_repository",
    "resolve_device",
]
