"""KServe v2 datatypes and the NumPy dtypes they map to, one to one."""

from __future__ import annotations

import numpy as np

__all__ = ["DATATYPES", "datatype_of", "dtype_of"]

#: KServe datatype → NumPy dtype. BYTES are object arrays of ``bytes``; BF16 has no NumPy dtype
#: and travels as torch.bfloat16 (its NumPy stand-in here is uint16, the same bits).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BF16": np.dtype(np.uint16),
    "BYTES": np.dtype(object),
}

_BY_DTYPE = {dt: name for name, dt in DATATYPES.items() if name != "BF16"}


def dtype_of(datatype: str) -> np.dtype:
    """The NumPy dtype of a KServe datatype name (``KeyError`` if unknown)."""
    return DATATYPES[datatype]


def datatype_of(dtype: np.dtype) -> str:
    """The KServe datatype name of a NumPy dtype (``KeyError`` if it has none)."""
    return _BY_DTYPE[np.dtype(dtype)]
