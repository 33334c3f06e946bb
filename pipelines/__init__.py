"""The shipped pipelines, their small assets (sample images, label files) and the model repository
they use (``models/``: ``color_net``, for ``classify_color``), found by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["asset_path", "models_dir", "pipelines_dir", "shipped_pipelines"]


def pipelines_dir() -> Path:
    """The folder of the shipped pipeline files (``load_pipeline`` searches it by name)."""
    return Path(str(resources.files(__name__)))


def models_dir() -> Path:
    """The shipped model repository (``<model>/config.yaml`` + ``<model>/<version>/model.pt``): the
    models the shipped pipelines' model steps name, and what a server without a repository serves.

        repo = twinpipe.models.load_repository(models_dir())
        pipe = load_pipeline("classify_color", models=repo.model_infos())
    """
    return pipelines_dir() / "models"


def shipped_pipelines() -> list[str]:
    """Names of the shipped pipelines, e.g. ``imagenet_preprocess``. Those with model steps
    (``classify_color``) load with the models of :func:`models_dir`."""
    return sorted(p.stem for p in pipelines_dir().glob("*.yaml"))


def asset_path(name: str) -> Path:
    """The path of a shipped asset, e.g. ``asset_path("coffee.jpg")``."""
    path = Path(str(resources.files(__name__).joinpath("assets", name)))
    if not path.is_file():
        available = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        raise FileNotFoundError(f"no shipped asset {name!r}; available: {', '.join(available)}")
    return path
