"""Errors raised by ops. Each names the op and says what was expected and what was given."""

from __future__ import annotations

__all__ = ["DecodeError", "InputError", "OpError", "ParamError"]


class OpError(Exception):
    """An op could not run: the message names the op and what was wrong."""


class ParamError(OpError, ValueError):
    """A parameter has the wrong type, is out of range, or is unknown."""


class InputError(OpError, ValueError):
    """An input tensor has the wrong dtype, rank, shape or device."""


class DecodeError(OpError, ValueError):
    """Encoded bytes (JPEG, PNG, …) are corrupt, truncated or of an unsupported format."""
