"""The model repository: a folder of ``<model>/config.yaml`` + ``<model>/<version>/<file>``.

    repo = load_repository("models/")
    repo.errors                      # model name → PipelineError (that model only; the rest loads)
    pipe = load_pipeline("classify.yaml", models=repo.model_infos())
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twinpipe.dag import Diagnostic, Location, ModelInfo, PipelineError, TensorDecl, dtype_of

from ._backends import FILES, TorchRunner, load_backend
from ._config import ModelConfig, load_config
from ._onnx import OnnxRunner

__all__ = ["LoadedModel", "Repository", "load_model", "load_repository"]


@dataclass(frozen=True)
class LoadedModel:
    """One loaded version of a model and what runs it."""

    config: ModelConfig
    version: int
    path: Path
    runner: TorchRunner | OnnxRunner

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        return self.runner(**inputs)

    def new_instance(self) -> TorchRunner | OnnxRunner:
        """Another copy of the model, loaded again from its files (its own module, weights and
        stream), for a second instance serving concurrently."""
        return load_backend(self.config, self.path)

    def info(self) -> ModelInfo:
        """The model as a pipeline step sees it: shapes start with the batch -1 when it batches
        (``max_batch_size: 0``: the tensors as declared, whole). A sequence model's state tensors
        are plain inputs and outputs here: a pipeline step wires its state itself."""
        batch = (-1,) if self.config.max_batch_size > 0 else ()

        def decl(d: TensorDecl) -> TensorDecl:
            return TensorDecl(d.name, d.datatype, (*batch, *d.shape), d.location)

        cfg = self.config
        device = getattr(self.runner, "device", None)
        on_gpu = device is not None and device.type == "cuda"
        # on a GPU a pipeline's next steps take the outputs where they are (the server copies back what it answers)
        fn = self.runner.keep_on_device if on_gpu and isinstance(self.runner, TorchRunner) else self.runner
        return ModelInfo(cfg.name, tuple(map(decl, cfg.model_inputs)), tuple(map(decl, cfg.model_outputs)), fn,
                         "cuda" if on_gpu else "cpu")


@dataclass
class Repository:
    """The loaded models (name → version → model) and, per model that failed, why."""

    path: Path
    models: dict[str, dict[int, LoadedModel]] = field(default_factory=dict)
    errors: dict[str, PipelineError] = field(default_factory=dict)

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """A model by name; its latest loaded version unless ``version`` is given."""
        if name in self.errors:
            raise KeyError(f"model {name!r} failed to load:\n{self.errors[name]}")
        versions = self.models.get(name)
        if not versions:
            raise KeyError(f"no model {name!r} in {self.path} (models: {', '.join(sorted(self.models)) or 'none'})")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise KeyError(f"model {name!r} has no loaded version {version} (loaded: {', '.join(map(str, sorted(versions)))})")
        return versions[version]

    def model_infos(self) -> dict[str, ModelInfo]:
        """For ``load_pipeline(..., models=...)``: ``name`` (latest version) and ``name:version``."""
        out: dict[str, ModelInfo] = {}
        for name, versions in sorted(self.models.items()):
            for v, model in sorted(versions.items()):
                out[f"{name}:{v}"] = model.info()
            out[name] = versions[max(versions)].info()
        return out


def load_repository(path: str | os.PathLike[str]) -> Repository:
    """Load every model under ``path``; a model that fails is kept in ``errors`` with its cause."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {root} is not a folder")
    repo = Repository(root)
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        try:
            repo.models[folder.name] = _load_model(folder)
        except PipelineError as e:
            repo.errors[folder.name] = e
    return repo


def load_model(folder: str | os.PathLike[str]) -> dict[int, LoadedModel]:
    """Load one model folder (its config and the versions its policy selects); raises
    :class:`PipelineError` with every problem found."""
    return _load_model(Path(folder))


def _load_model(folder: Path) -> dict[int, LoadedModel]:
    config_path = folder / "config.yaml"
    if not config_path.is_file():
        raise PipelineError([Diagnostic(Location(str(folder), 1, 1), f"model folder {folder.name!r} has no config.yaml")])
    config = load_config(config_path, folder_name=folder.name)
    available = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
    problems: list[Diagnostic] = []
    if not available:
        problems.append(Diagnostic(config.location, f"model {config.name!r} has no version folders (numeric, e.g. {folder}/1/)"))
    if config.version_policy.kind == "specific":
        for v in config.version_policy.versions:
            if v not in available:
                problems.append(Diagnostic(config.where("version_policy"), f"version_policy names version {v}, but there is no folder {folder / str(v)}"))
    wanted = config.version_policy.select(available)
    file = FILES.get(config.backend)
    for v in wanted:
        if file is not None and not (folder / str(v) / file).is_file():
            problems.append(Diagnostic(config.where("backend"), f"backend {config.backend} needs {folder / str(v) / file}, which does not exist"))
    if problems:
        raise PipelineError(problems)
    loaded: dict[int, LoadedModel] = {}
    for v in wanted:
        version_dir = folder / str(v)
        target = version_dir / file if file else version_dir
        try:
            runner = load_backend(config, version_dir)
        except Exception as e:  # a broken file: a clear error for this model only
            raise PipelineError([Diagnostic(Location(str(target), 1, 1), f"cannot load model {config.name!r} version {v} ({config.backend}): {type(e).__name__}: {_first_line(e)}")]) from e
        model = LoadedModel(config, v, version_dir, runner)
        if config.warmup is not None:
            _warm_up(model, config.warmup.get("batch_size", 1), target)
        loaded[v] = model
    return loaded


def _warm_up(model: LoadedModel, batch_size: int, where: Path) -> None:
    """Run the model once on zeros of the declared shapes (dynamic dims: 1)."""
    cfg = model.config
    batch = (batch_size,) if cfg.max_batch_size > 0 else ()
    inputs = {}
    for d in cfg.model_inputs:
        dtype = dtype_of(d.datatype)
        inputs[d.name] = np.zeros((*batch, *(max(s, 1) for s in d.shape)), dtype=dtype)
    try:
        if isinstance(model.runner, TorchRunner) and cfg.decoupled:  # its first response, then the stream closes
            responses = model.runner.responses(**inputs)
            next(responses, None)
            responses.close()
        else:
            model(**inputs)
    except Exception as e:
        raise PipelineError([Diagnostic(Location(str(where), 1, 1), f"model {cfg.name!r} version {model.version} failed its warmup: {type(e).__name__}: {_first_line(e)}")]) from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"
