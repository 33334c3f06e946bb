"""Where an array lives and how to view it as NumPy without copying.

Ops keep the caller's array type: a torch tensor in gives a torch tensor out. On the host that
is a zero-copy view both ways (``Tensor.numpy()`` / ``torch.from_numpy``). torch is imported only
when a torch tensor is actually seen, so ops stay cheap to import in NumPy-only code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._device import is_device_array

__all__ = ["ArrayKind", "from_host", "is_bytes_like", "kind_of", "to_host"]

ArrayKind = str  # "numpy" | "torch" | "cuda" | "bytes"


def is_bytes_like(x: Any) -> bool:
    return isinstance(x, (bytes, bytearray, memoryview, np.bytes_))


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "is_cuda")


def kind_of(x: Any) -> ArrayKind:
    """``numpy``, ``torch`` (a CPU tensor), ``cuda`` (CuPy or a torch CUDA tensor) or ``bytes``."""
    if isinstance(x, np.ndarray):
        return "numpy"
    if is_bytes_like(x):
        return "bytes"
    if _is_torch(x):
        return "cuda" if x.is_cuda else "torch"
    if is_device_array(x):
        return "cuda"  # CuPy, Numba device arrays (the CUDA simulator's too)
    raise TypeError(f"expected a NumPy array, a torch tensor, a CuPy array or bytes, got {type(x).__name__}")


def to_host(x: Any) -> np.ndarray | bytes:
    """A NumPy view of a host array (no copy), or the bytes of a bytes-like object."""
    kind = kind_of(x)
    if kind == "numpy":
        return x
    if kind == "bytes":
        return bytes(x)
    if kind == "torch":
        t = x.detach()
        if t.dtype.is_floating_point and str(t.dtype) == "torch.bfloat16":
            raise TypeError("bfloat16 tensors have no NumPy view; convert with .float() first")
        return t.numpy()
    raise TypeError("a CUDA array has no host view")


def from_host(kind: ArrayKind) -> Callable[[Any], Any]:
    """The function that turns a NumPy result back into the caller's array type (BYTES stay NumPy)."""
    if kind == "torch":
        import torch

        def wrap(a: Any) -> Any:
            if not isinstance(a, np.ndarray) or a.dtype == np.dtype(object):
                return a  # BYTES (object arrays) have no torch type: they stay NumPy
            # torch views any positive strides; negative ones (a flipped view) need a copy
            return torch.from_numpy(a if all(s >= 0 for s in a.strides) else a.copy())

        return wrap
    return lambda a: a
