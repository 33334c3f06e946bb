"""Where a tabular op's data-derived parameters come from: literal params, or the stats file.

An op that needs, say, a mean and a std takes either ``mean=…, std=…`` or ``stats=PATH,
feature=NAME`` — never both. With ``stats``, binding the op checks that the file exists and
has the feature with what the op needs (so a pipeline fails validation, not its first request),
and every call reads the values through the per-path cache (``cached_stats``), which reloads
the file when its modification time or size changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from .._errors import OpError
from .._params import Optional, Param
from ._column import Text
from ._stats import CategoricalStats, FeatureStats, NumericStats, StatsError, cached_stats

__all__ = ["check_source", "feature_stats", "source_params"]

S = TypeVar("S", NumericStats, CategoricalStats)


def source_params(what: str) -> list[Param]:
    """The ``stats`` and ``feature`` params of an op whose ``what`` can come from a stats file."""
    return [
        Param("stats", Optional(Text("a stats file path (or pkg:PACKAGE/PATH)")), None,
              doc=f"stats file (written by tabular.save_stats) to read {what} from, instead of literal params"),
        Param("feature", Optional(Text("a feature name")), None, doc="the feature's entry in the stats file"),
    ]


def check_source(params: dict[str, Any], literal: Sequence[str], kind: type[S], needs: str | None = None) -> S | None:
    """Either every ``literal`` param or ``stats`` + ``feature`` (a ``ValueError`` otherwise).

    With ``stats``, loads the feature (it must be of ``kind`` and, if ``needs`` names a field,
    have it set) and returns it; with literal params, returns None.
    """
    given = [n for n in literal if params.get(n) is not None]
    from_file = params.get("stats") is not None or params.get("feature") is not None
    names = " and ".join(repr(n) for n in literal)
    if from_file:
        if given:
            raise ValueError(f"give either {names} or 'stats' and 'feature', not both ({given[0]!r} is set)")
        if params.get("stats") is None or params.get("feature") is None:
            raise ValueError("'stats' and 'feature' go together: the stats file and the feature's name in it")
        return _load(params, kind, needs, ValueError)
    if len(given) != len(literal):
        missing = [n for n in literal if n not in given]
        raise ValueError(f"give {names}, or 'stats' and 'feature' (missing {', '.join(map(repr, missing))})")
    return None


def feature_stats(params: dict[str, Any], kind: type[S], op_name: str, needs: str | None = None) -> S:
    """The feature's stats at call time (the file may have changed since binding)."""
    try:
        return _load(params, kind, needs, OpError)
    except OpError as e:
        raise OpError(f"{op_name}: {e}") from None


def _load(params: dict[str, Any], kind: type[S], needs: str | None, error: type[Exception]) -> S:
    path, name = params["stats"], params["feature"]
    try:
        f: FeatureStats = cached_stats(path)[name]
    except StatsError as e:
        raise error(f"stats {path!r}: {e}") from None
    if not isinstance(f, kind):
        want = "numeric" if kind is NumericStats else "categorical"
        raise error(f"stats {path!r}: feature {name!r} is {f.type}, this op needs a {want} feature")
    if needs is not None and getattr(f, needs) is None:
        raise error(f"stats {path!r}: feature {name!r} has no {needs} (fit it with them)")
    return f
