"""A deliberately wrong CUDA kernel for the testing kit's test (``cuda`` must be a module global for
the simulator)."""

from typing import Any

from numba import cuda


@cuda.jit  # type: ignore[untyped-decorator]
def first_channels_only(src: Any, dst: Any) -> None:  # pragma: no cover (device code)
    for y in range(cuda.threadIdx.x, src.shape[0], cuda.blockDim.x):  # type: ignore[attr-defined]
        for x in range(cuda.threadIdx.y, src.shape[1], cuda.blockDim.y):  # type: ignore[attr-defined]
            for k in range(src.shape[2] - 1):
                dst[y, x, k] = src[y, x, k]
