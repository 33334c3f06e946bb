"""The registry of ops by dotted name (``image.resize``), which YAML pipelines look ops up in."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from ._errors import OpError

if TYPE_CHECKING:
    from ._op import Op

__all__ = ["get_op", "list_ops", "register"]

_OPS: dict[str, Op] = {}


def register(op: Op) -> None:
    """Register ``op`` under its name; re-registering from the same module replaces it (reloads)."""
    old = _OPS.get(op.name)
    if old is not None and old.module != op.module:
        raise OpError(f"op {op.name!r} is already registered by module {old.module}")
    _OPS[op.name] = op


def get_op(name: str, module: str | None = None) -> Op:
    """The op registered as ``name``; importing ``module`` first if it is not registered yet."""
    if name not in _OPS:
        _load_builtins()
        if module is not None and name not in _OPS:
            importlib.import_module(module)
    try:
        return _OPS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_OPS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise OpError(f"unknown op {name!r}{hint}") from None


def list_ops(prefix: str = "") -> list[str]:
    """Names of the registered ops, sorted, optionally only those starting with ``prefix``."""
    _load_builtins()
    return sorted(n for n in _OPS if n.startswith(prefix))


_FAMILIES = ("image", "classify", "detect", "segment", "tabular", "text")


def _load_builtins() -> None:
    for family in _FAMILIES:
        importlib.import_module(f"{__package__}.{family}")
