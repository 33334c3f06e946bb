"""The shipped pipelines and their small assets (sample images, label files), found by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["asset_path", "pipelines_dir", "shipped_pipelines"]


def pipelines_dir() -> Path:
    """The folder of the shipped pipeline files (``load_pipeline`` searches it by name)."""
    return Path(str(resources.files(__name__)))


def shipped_pipelines() -> list[str]:
    """Names of the shipped pipelines, e.g. ``imagenet_preprocess``."""
    return sorted(p.stem for p in pipelines_dir().glob("*.yaml"))


def asset_path(name: str) -> Path:
    """The path of a shipped asset, e.g. ``asset_path("coffee.jpg")``."""
    path = Path(str(resources.files(__name__).joinpath("assets", name)))
    if not path.is_file():
        available = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        raise FileNotFoundError(f"no shipped asset {name!r}; available: {', '.join(available)}")
    return path
