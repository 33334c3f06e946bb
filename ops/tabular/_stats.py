"""The stats file: the data-derived parameters that training writes and serving reads.

Ops that need parameters learned from data (``standardize``'s mean and std, ``bucketize``'s
boundaries, ``vocab_lookup``'s vocabulary, …) take ``stats: PATH, feature: NAME`` and read them
from this one JSON file, so training and serving cannot drift apart. ``fit`` computes it from a
dataset, ``save_stats`` writes it (atomically: a reader never sees half a file), ``load_stats``
reads it. Ops keep what they loaded per path and reload when the file's modification time or
size changes.

Format (``"format": "twinpipe.tabular.stats"``, ``"version": 1``), one entry per feature::

    {"format": "twinpipe.tabular.stats", "version": 1, "features": {
      "age": {"type": "numeric", "count": 990, "missing": 10, "infinite": 0,
              "mean": 41.2, "std": 12.9, "min": 18.0, "max": 90.0,
              "boundaries": [27.5, 39.0, 52.25], "fill": 41.2},
      "country": {"type": "categorical", "values": "string", "count": 1000, "missing": 3,
                  "vocabulary": ["US", "DE", {"base64": "/w=="}], "frequencies": [510, 203, 2],
                  "fill": "US"},
      "item_id": {"type": "categorical", "values": "int", "count": 1000, "missing": 0,
                  "vocabulary": [1017, 6, 3301], "frequencies": [12, 9, 9], "fill": 1017}}}

Numbers are written with Python's shortest round-trip repr, so a float read back is bit-equal to
the float written. Strings that are valid UTF-8 are JSON strings; others ``{"base64": ...}``.
``boundaries`` is ``null`` when the feature was not fitted for bucketing.

``PATH`` is a file path (relative paths from the current directory) or ``pkg:PACKAGE/PATH``, a
file shipped inside an installed Python package (``pkg:twinpipe.pipelines/assets/x.json``).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "FORMAT",
    "CategoricalStats",
    "FeatureStats",
    "NumericStats",
    "Stats",
    "StatsError",
    "cached_stats",
    "load_stats",
    "resolve_path",
    "save_stats",
]

FORMAT = "twinpipe.tabular.stats"
VERSION = 1


class StatsError(ValueError):
    """A stats file is missing, unreadable, or lacks what an op asked for."""


@dataclass(frozen=True)
class NumericStats:
    """What ``fit`` learned of a numeric feature (NaN is missing; ±inf is counted, not used)."""

    count: int
    missing: int
    infinite: int
    mean: float
    std: float
    min: float
    max: float
    boundaries: tuple[float, ...] | None
    fill: float
    type: Literal["numeric"] = "numeric"


@dataclass(frozen=True)
class CategoricalStats:
    """What ``fit`` learned of a categorical feature: its vocabulary, most frequent first."""

    values: Literal["string", "int"]
    count: int
    missing: int
    vocabulary: tuple[Any, ...]  # bytes for "string", int for "int"
    frequencies: tuple[int, ...]
    fill: bytes | int | None
    type: Literal["categorical"] = "categorical"
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, hash=False)


FeatureStats = NumericStats | CategoricalStats


@dataclass(frozen=True)
class Stats:
    """A stats file's content: feature name → its stats."""

    features: Mapping[str, FeatureStats]

    def __getitem__(self, name: str) -> FeatureStats:
        try:
            return self.features[name]
        except KeyError:
            raise StatsError(f"no feature {name!r}; the stats have {', '.join(sorted(self.features)) or 'none'}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.features

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "features": {n: _feature_json(f) for n, f in self.features.items()}}

    @classmethod
    def from_json(cls, data: Any, where: str = "stats") -> Stats:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StatsError(f"{where}: not a tabular stats file (expected \"format\": {FORMAT!r})")
        if data.get("version") != VERSION:
            raise StatsError(f"{where}: stats version {data.get('version')!r} is not supported (expected {VERSION})")
        features = data.get("features")
        if not isinstance(features, dict):
            raise StatsError(f"{where}: \"features\" must be an object of feature name → stats")
        out: dict[str, FeatureStats] = {}
        for name, entry in features.items():
            try:
                out[name] = _feature_from_json(entry)
            except (KeyError, TypeError, ValueError, binascii.Error) as e:
                raise StatsError(f"{where}: feature {name!r}: bad entry ({type(e).__name__}: {e})") from None
        return cls(out)


def _string_json(value: bytes) -> Any:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode("ascii")}


def _string_from_json(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"], validate=True)
    raise ValueError(f"a string is a JSON string or {{\"base64\": ...}}, got {value!r}")


def _feature_json(f: FeatureStats) -> dict[str, Any]:
    if isinstance(f, NumericStats):
        return {
            "type": "numeric", "count": f.count, "missing": f.missing, "infinite": f.infinite,
            "mean": f.mean, "std": f.std, "min": f.min, "max": f.max,
            "boundaries": None if f.boundaries is None else list(f.boundaries), "fill": f.fill,
        }
    strings = f.values == "string"
    vocab = [_string_json(v) for v in f.vocabulary] if strings else list(f.vocabulary)
    fill = None if f.fill is None else (_string_json(f.fill) if isinstance(f.fill, bytes) else f.fill)
    return {
        "type": "categorical", "values": f.values, "count": f.count, "missing": f.missing,
        "vocabulary": vocab, "frequencies": list(f.frequencies), "fill": fill,
    }


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a count, got {value!r}")
    return value


def _feature_from_json(e: Any) -> FeatureStats:
    if not isinstance(e, dict):
        raise ValueError("a feature's entry is an object")
    if e["type"] == "numeric":
        b = e["boundaries"]
        boundaries = None if b is None else tuple(_number(v) for v in b)
        if boundaries is not None and any(x >= y for x, y in itertools.pairwise(boundaries)):
            raise ValueError("boundaries must be strictly increasing")
        return NumericStats(
            _count(e["count"]), _count(e["missing"]), _count(e["infinite"]), _number(e["mean"]), _number(e["std"]),
            _number(e["min"]), _number(e["max"]), boundaries, _number(e["fill"]),
        )
    if e["type"] == "categorical":
        kind = e["values"]
        if kind == "string":
            vocab: tuple[Any, ...] = tuple(_string_from_json(v) for v in e["vocabulary"])
            fill: bytes | int | None = None if e["fill"] is None else _string_from_json(e["fill"])
        elif kind == "int":
            vocab = tuple(_integer(v) for v in e["vocabulary"])
            fill = None if e["fill"] is None else _integer(e["fill"])
        else:
            raise ValueError(f"\"values\" is \"string\" or \"int\", got {kind!r}")
        freqs = tuple(_count(v) for v in e["frequencies"])
        if len(set(vocab)) != len(vocab) or len(freqs) != len(vocab):
            raise ValueError("the vocabulary must be distinct values, one frequency each")
        return CategoricalStats(kind, _count(e["count"]), _count(e["missing"]), vocab, freqs, fill)
    raise ValueError(f"\"type\" is \"numeric\" or \"categorical\", got {e['type']!r}")


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise ValueError(f"an int feature's values are int64 integers, got {value!r}")
    return value


# -- files --------------------------------------------------------------------------------------


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """A stats path as a file path: ``pkg:PACKAGE/PATH`` is looked up in an installed package."""
    text = os.fspath(path)
    if text.startswith("pkg:"):
        package, _, inner = text[4:].partition("/")
        try:
            root = resources.files(package)
        except (ModuleNotFoundError, TypeError, ValueError) as e:
            raise StatsError(f"stats {text!r}: no package {package!r} ({e})") from None
        return Path(str(root.joinpath(*inner.split("/"))))
    return Path(text)


def save_stats(stats: Stats, path: str | os.PathLike[str]) -> Path:
    """Write ``stats`` as JSON to ``path`` (atomically: a temporary file, then a rename)."""
    target = resolve_path(path)
    text = json.dumps(stats.to_json(), indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def load_stats(path: str | os.PathLike[str]) -> Stats:
    """Read a stats file written by ``save_stats``; a ``StatsError`` names the file and what is wrong."""
    p = resolve_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StatsError(f"stats file {os.fspath(path)!r} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StatsError(f"stats file {os.fspath(path)!r} cannot be read: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise StatsError(f"stats file {os.fspath(path)!r} is not valid JSON: {e}") from None
    return Stats.from_json(data, f"stats file {os.fspath(path)!r}")


_CACHE: dict[str, tuple[tuple[int, int], Stats]] = {}
_LOCK = threading.Lock()


def cached_stats(path: str) -> Stats:
    """``load_stats(path)``, kept per path and reloaded when the file's mtime or size changes."""
    p = resolve_path(path)
    try:
        st = os.stat(p)
    except OSError:
        raise StatsError(f"stats file {path!r} not found") from None
    key = (st.st_mtime_ns, st.st_size)
    where = os.path.abspath(p)  # one entry per file, whatever the current directory
    entry = _CACHE.get(where)
    if entry is not None and entry[0] == key:
        return entry[1]
    stats = load_stats(path)
    with _LOCK:
        _CACHE[where] = (key, stats)
    return stats
