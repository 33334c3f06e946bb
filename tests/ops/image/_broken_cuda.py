"""A deliberately wrong CUDA kernel for the testing kit's test (``cuda`` must be a module global for
the simulator): it copies a batch ``N H W C`` but leaves the last channel unwritten."""

from typing import Any

from numba import cuda


@cuda.jit
def first_channels_only(src: Any, dst: Any) -> None:  # pragma: no cover (device code)
    for n in range(src.shape[0]):
        for y in range(cuda.threadIdx.y, src.shape[1], cuda.blockDim.y):
            for x in range(cuda.threadIdx.x, src.shape[2], cuda.blockDim.x):
                for k in range(src.shape[3] - 1):
                    dst[n, y, x, k] = src[n, y, x, k]
