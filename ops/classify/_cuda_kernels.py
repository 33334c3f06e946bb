"""The Numba CUDA kernels of the classification ops (device code): rows ``N × C``, one block per
row, its threads striding over the classes and reducing in shared memory. Imported on the first
GPU call only (``cuda`` must be a global of this module for Numba's simulator)."""

from __future__ import annotations

import math
from typing import Any

from numba import cuda, float64

__all__ = ["THREADS", "sigmoid_kernel", "softmax_kernel", "topk_kernel"]

THREADS = 32  # threads per row: one warp (a power of two: the tree reductions halve it)


@cuda.jit(device=True)
def _reduce_max(buf: Any, t: int) -> None:  # pragma: no cover (device code)
    step = THREADS // 2
    while step > 0:
        if t < step and buf[t + step] > buf[t]:
            buf[t] = buf[t + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit(device=True)
def _reduce_sum(buf: Any, t: int) -> None:  # pragma: no cover (device code)
    step = THREADS // 2
    while step > 0:
        if t < step:
            buf[t] += buf[t + step]
        cuda.syncthreads()
        step //= 2


@cuda.jit
def softmax_kernel(x: Any, out: Any, log: Any) -> None:  # pragma: no cover (device code)
    """The reference's rules in float64: NaN anywhere → a NaN row; all -inf → NaN; +inf entries
    share the mass; else exp(x - max) / sum (or its log)."""
    row, t = cuda.blockIdx.x, cuda.threadIdx.x
    c = x.shape[1]
    big = cuda.shared.array(THREADS, float64)
    nans = cuda.shared.array(THREADS, float64)
    pinf = cuda.shared.array(THREADS, float64)
    m, n_nan, n_pinf = -math.inf, 0.0, 0.0
    for j in range(t, c, THREADS):
        v = float64(x[row, j])
        if v != v:
            n_nan += 1.0
        elif v == math.inf:
            n_pinf += 1.0
        if v > m:
            m = v
    big[t], nans[t], pinf[t] = m, n_nan, n_pinf
    cuda.syncthreads()
    _reduce_max(big, t)
    _reduce_sum(nans, t)
    _reduce_sum(pinf, t)
    m, n_nan, n_pinf = big[0], nans[0], pinf[0]
    cuda.syncthreads()
    if n_nan > 0 or m == -math.inf:
        for j in range(t, c, THREADS):
            out[row, j] = math.nan
        return
    if n_pinf > 0:
        for j in range(t, c, THREADS):
            hit = float64(x[row, j]) == math.inf
            if log:
                out[row, j] = -math.log(n_pinf) if hit else -math.inf
            else:
                out[row, j] = 1.0 / n_pinf if hit else 0.0
        return
    s = 0.0
    for j in range(t, c, THREADS):
        s += math.exp(float64(x[row, j]) - m)
    big[t] = s
    cuda.syncthreads()
    _reduce_sum(big, t)
    s = big[0]
    for j in range(t, c, THREADS):
        z = float64(x[row, j]) - m
        out[row, j] = z - math.log(s) if log else math.exp(z) / s


@cuda.jit
def sigmoid_kernel(x: Any, out: Any) -> None:  # pragma: no cover (device code)
    """``1 / (1 + exp(-x))`` in float64, through ``exp(-|x|)`` (never overflows)."""
    j, row = cuda.grid(2)
    if row < x.shape[0] and j < x.shape[1]:
        v = float64(x[row, j])
        if v != v:
            out[row, j] = v
            return
        e = math.exp(-abs(v))
        out[row, j] = 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)


@cuda.jit
def topk_kernel(s: Any, values: Any, indices: Any, k: Any) -> None:  # pragma: no cover (device code)
    """A thread per score counts the scores ranked before it — NaN first (in index order), then
    descending, ties by the lower index (a strict total order, so every rank is taken once) — and
    writes itself at its rank when that is below ``k``."""
    j, row = cuda.grid(2)
    c = s.shape[1]
    if row < s.shape[0] and j < c:
        v = s[row, j]
        v_nan = v != v
        rank = 0
        for i in range(c):
            u = s[row, i]
            if u != u:
                if not v_nan or i < j:
                    rank += 1
            elif not v_nan and (u > v or (u == v and i < j)):
                rank += 1
        if rank < k:
            values[row, rank] = v
            indices[row, rank] = j
