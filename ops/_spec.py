"""Tensor specs: the named, typed, symbolically shaped inputs and outputs of an op."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BYTES", "TensorSpec", "dtype_name"]

#: The dtype of encoded payloads (JPEG bytes, strings): a Python ``bytes`` per element.
BYTES = np.dtype(object)


def dtype_name(dtype: np.dtype | None) -> str:
    if dtype is None:
        return "any"
    return "bytes" if dtype == BYTES else np.dtype(dtype).name


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor of an op's signature.

    ``dtypes`` lists the accepted dtypes (``None``: as the op decides, e.g. "same as input").
    ``shape`` is symbolic, e.g. ``"H W C"``; a number fixes a dimension (``"H W 3"``), and an
    empty shape is a scalar (one encoded image is a scalar of dtype ``bytes``).
    """

    name: str
    dtypes: tuple[np.dtype, ...] | None
    shape: tuple[str, ...]
    doc: str = ""

    def __init__(
        self,
        name: str,
        dtypes: tuple[np.dtype | type | str, ...] | None,
        shape: str | tuple[str, ...] = "",
        doc: str = "",
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtypes", None if dtypes is None else tuple(np.dtype(d) for d in dtypes))
        dims = tuple(shape.split()) if isinstance(shape, str) else tuple(shape)
        object.__setattr__(self, "shape", dims)
        object.__setattr__(self, "doc", doc)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_bytes(self) -> bool:
        return self.dtypes == (BYTES,)

    def fixed_dims(self) -> dict[int, int]:
        """Axes whose size the spec fixes, e.g. ``{2: 3}`` for ``"H W 3"``."""
        return {i: int(d) for i, d in enumerate(self.shape) if d.isdigit()}

    def describe(self) -> str:
        dt = "|".join(dtype_name(d) for d in self.dtypes) if self.dtypes else "any"
        return f"{self.name}: {dt}[{' '.join(self.shape)}]"
