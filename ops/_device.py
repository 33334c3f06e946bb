"""GPU arrays as CUDA kernels see them: torch CUDA tensors, CuPy arrays and Numba device arrays
(the CUDA simulator's too), viewed without copies, outputs allocated as the caller's type, and the
caller's stream.

A CUDA kernel of an op receives Numba device-array views (``numba.cuda.as_cuda_array`` over
``__cuda_array_interface__``: no copy) and launches on :func:`stream` — the torch or CuPy stream
current when the op was called, so its work orders with the caller's. Numba's CUDA module is
imported only when a GPU array is actually seen. Under ``NUMBA_ENABLE_CUDASIM=1`` (no GPU) the
same kernels run in Numba's simulator on its device arrays, which is how they are tested here.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["Meta", "as_kernel_array", "batch_view", "constant", "cuda_usable", "empty", "empty_like", "gpu_present", "grid_1d", "grid_2d", "is_device_array", "launching", "scratch", "stream", "table",
           "to_device", "to_host_copy", "upload"]

# (the stream kernels launch on, the caller's array whose kind scratch buffers take)
_LAUNCH: contextvars.ContextVar[tuple[Any, Any]] = contextvars.ContextVar("twinpipe_cuda_launch", default=(0, None))


class Meta:
    """What an op's ``infer`` reads of a GPU input: its shape, NumPy dtype and rank."""

    __slots__ = ("dtype", "ndim", "shape", "size")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.size = int(np.prod(shape))


@functools.cache
def gpu_present() -> bool:
    """A real CUDA GPU: torch or Numba sees one (Numba's simulator does not count)."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:  # pragma: no cover (torch is a dependency)
        pass
    if _simulated():
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())  # type: ignore[no-untyped-call]
    except Exception:
        return False


def _simulated() -> bool:
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def _fit(limit: int, n: int) -> int:
    """``limit``, or in the simulator the smallest power of two covering ``n`` (at most ``limit``):
    it runs a Python thread per CUDA thread of a block, idle ones included."""
    if not _simulated():
        return limit
    size = 1
    while size < min(n, limit):
        size *= 2
    return size


def grid_2d(w: int, h: int, n: int, block: tuple[int, int] = (32, 8)) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Grid and block for a thread per ``(x < w, y < h, z < n)``: 256 threads, a warp along x."""
    bx, by = _fit(block[0], w), _fit(block[1], h)
    return ((w + bx - 1) // bx, (h + by - 1) // by, max(n, 1)), (bx, by, 1)


def grid_1d(n: int, threads: int = 128) -> tuple[int, int]:
    """Blocks and threads for a thread per ``i < n``."""
    t = _fit(threads, n)
    return max((n + t - 1) // t, 1), t


def cuda_usable() -> bool:
    """A GPU, or Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``): GPU steps can run."""
    return gpu_present() or _simulated()


def _is_torch_cuda(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and bool(getattr(x, "is_cuda", False))


def _is_numba(x: Any) -> bool:
    module = type(x).__module__
    return module.startswith("numba.cuda") or module.startswith("numba_cuda")


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def is_device_array(x: Any) -> bool:
    """A torch CUDA tensor, a CuPy array, a Numba device array (simulated or not), or anything
    with ``__cuda_array_interface__``."""
    return _is_torch_cuda(x) or hasattr(x, "__cuda_array_interface__") or _is_numba(x)


def meta(x: Any) -> Meta:
    if _is_torch_cuda(x):
        import torch

        return Meta(tuple(x.shape), torch.empty(0, dtype=x.dtype).numpy().dtype)
    return Meta(tuple(x.shape), np.dtype(x.dtype))


def as_kernel_array(x: Any) -> Any:
    """A Numba device-array view of ``x`` (no copy)."""
    if _is_numba(x):
        return x
    from numba import cuda

    # sync=False: kernels launch on the caller's stream, which orders them after its work; numba's
    # default would synchronise the host with the exporting stream at every view (each op call)
    return cuda.as_cuda_array(x, sync=False)  # type: ignore[no-untyped-call]


def batch_view(x: Any, dense: bool) -> Any:
    """A Numba view of ``x`` with a leading batch axis (a batch of one unless ``dense``); strided
    arrays (a permuted torch tensor) too, where Numba's reshape takes contiguous ones only."""
    view = as_kernel_array(x)
    if dense:
        return view
    if _simulated() or view.is_c_contiguous():
        return view.reshape((1, *view.shape))
    from numba import cuda

    desc = dict(view.__cuda_array_interface__)
    desc["shape"] = (1, *desc["shape"])
    desc["strides"] = (0, *desc["strides"])  # a unit axis: any stride
    return cuda.from_cuda_array_interface(desc, owner=view, sync=False)


def empty_like(x: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
    """An uninitialised GPU array of ``x``'s type (torch / CuPy / Numba; ``None``: Numba) and device."""
    if _is_torch_cuda(x):
        import torch

        return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, device=x.device)
    if _is_cupy(x):
        import cupy

        return cupy.empty(shape, dtype)
    from numba import cuda

    return cuda.device_array(shape, dtype, stream=stream())


def caller_stream(x: Any) -> Any:
    """The stream current for ``x``'s library (0: the default stream)."""
    if _is_torch_cuda(x):
        import torch
        from numba import cuda

        return cuda.external_stream(torch.cuda.current_stream(x.device).cuda_stream)
    if _is_cupy(x):
        import cupy
        from numba import cuda

        return cuda.external_stream(cupy.cuda.get_current_stream().ptr)
    return 0


def stream() -> Any:
    """The stream a kernel launches on (set by the op's dispatch for the duration of the call)."""
    return _LAUNCH.get()[0]


@contextlib.contextmanager
def launching(like: Any) -> Iterator[None]:
    """Kernels launched inside run on ``like``'s current stream and take scratch memory of its kind
    (``None``: Numba's default stream and allocator)."""
    token = _LAUNCH.set((0 if like is None else caller_stream(like), like))
    try:
        yield
    finally:
        _LAUNCH.reset(token)


def empty(shape: tuple[int, ...], dtype: Any) -> Any:
    """An uninitialised GPU array of the caller's kind (a kernel's output whose size it decides)."""
    return empty_like(_LAUNCH.get()[1], shape, np.dtype(dtype))


def scratch(shape: tuple[int, ...], dtype: Any) -> Any:
    """A temporary device array (a Numba view) from the caller's allocator: torch's or CuPy's
    caching pool, so a kernel's intermediate costs no ``cudaMalloc``."""
    return as_kernel_array(empty(shape, dtype))


def _uploaded(cache: dict[Any, Any], key: Any, limit: int, host: np.ndarray) -> Any:
    """``cache[key]``, else ``host`` uploaded into it (the oldest entry dropped past ``limit``)."""
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= limit:
            cache.pop(next(iter(cache)))
        from numba import cuda

        hit = cache[key] = (host, cuda.to_device(np.ascontiguousarray(host)))
    return hit[1]


_TABLES: dict[tuple[int, int], tuple[np.ndarray, Any]] = {}


def table(host: np.ndarray) -> Any:
    """A device copy of a read-only, long-lived host table (resampling taps, index maps), made
    once per device. The cache holds the host array, so its ``id`` cannot be reused meanwhile."""
    return _uploaded(_TABLES, (_device_id(), id(host)), 256, host)


_CONSTANTS: dict[tuple[int, str, tuple[int, ...], bytes], tuple[np.ndarray, Any]] = {}


def constant(values: Any, dtype: Any = None) -> Any:
    """A small read-only parameter (mean/std, index maps, weights) on the device, uploaded once per
    device and value: a call with the same values reuses it instead of a blocking host→device copy."""
    host = np.ascontiguousarray(values, dtype)
    return _uploaded(_CONSTANTS, (_device_id(), host.dtype.str, host.shape, host.tobytes()), 512, host)


def _device_id() -> int:
    from numba import cuda

    try:
        return int(cuda.current_context().device.id)  # type: ignore[no-untyped-call]
    except AttributeError:  # the simulator has one device
        return 0


def to_device(x: np.ndarray) -> Any:
    """A host array copied to a Numba device array on the current stream (small parameters; the
    testing kit's way onto the GPU or simulator)."""
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(x), stream=stream())


def upload(x: Any) -> Any:
    """A host array (NumPy, or a torch CPU tensor) on the GPU: a torch CUDA tensor when torch has a
    GPU (staged through pinned memory from torch's caching host allocator, copied without blocking,
    on torch's current stream), else a Numba device array (the simulator's, under it)."""
    if gpu_present():
        import torch

        if torch.cuda.is_available():
            t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, copy=not np.asarray(x).flags.writeable))
            return t.pin_memory().to("cuda", non_blocking=True)
    return to_device(x.numpy() if type(x).__module__.startswith("torch") else np.asarray(x))


def to_host_copy(x: Any) -> np.ndarray:
    """A GPU array copied to the host."""
    if _is_torch_cuda(x):
        return x.detach().cpu().numpy()
    if _is_cupy(x):
        return x.get()
    return as_kernel_array(x).copy_to_host()
