"""Numba kernels of the classification ops: softmax / log-softmax / sigmoid over rows, top-k.

Every kernel works on 2-D ``[rows, classes]`` arrays (one sample is one row), so a dense batch
is one call. float32 rows take a vectorised fast path when they are finite: the row's sum is
finite exactly when it holds no NaN and no infinity (a sum of finite values can only overflow,
which also sends the row to the careful path). The fast path finds the maximum on the floats'
bit patterns (an integer max, which vectorises), and computes ``exp`` with a Cody-Waite range
reduction and a degree-6 polynomial (Cephes ``expf``, about 1 ulp) that LLVM vectorises, as
Numba has no vector ``exp`` without Intel's SVML. Everything else (float64, rows with NaN or
infinities) takes the careful scalar path in float64, which is the reference's algorithm.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

from ..image._common import jit

__all__ = ["as_rows", "sigmoid_rows", "softmax_rows", "threshold_row", "topk_rows"]

F = TypeVar("F", bound=Callable[..., Any])

#: all of LLVM's fast-math flags: only for loops over values known to be finite
fastjit = cast(Callable[[F], F], functools.partial(numba.njit, cache=True, nogil=True, fastmath=True, error_model="numpy"))
#: reassociation only (a vectorised sum) — NaN and infinities still propagate
sumjit = cast(Callable[[F], F], functools.partial(numba.njit, cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"}))

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MIN = np.float32(-87.3)  # exp below this is under float32's smallest normal: taken as 0
_NAN_KEY = np.int64(0x7FFFFFFFFFFFFFFF)
_HEAP_ABOVE = 16  # larger k: a heap of k (O(C log k)) instead of insertion into k sorted slots


@sumjit
def _sum32(x: np.ndarray) -> Any:
    s = np.float32(0.0)
    for j in range(x.shape[0]):
        s += x[j]
    return s


@jit
def _max32(xi: np.ndarray) -> Any:
    """Max of a finite float32 row given as its int32 bit patterns: sign-magnitude → two's
    complement order (``v ^ ((v >> 31) & 0x7fffffff)``), an integer max that vectorises."""
    m = np.int32(-2147483648)
    for j in range(xi.shape[0]):
        v = xi[j]
        m = max(m, np.int32(v ^ ((v >> np.int32(31)) & np.int32(0x7FFFFFFF))))
    m = np.int32(m ^ ((m >> np.int32(31)) & np.int32(0x7FFFFFFF)))
    return m.view(np.float32)


@fastjit
def _exp32(t: Any) -> Any:
    """``exp(t)`` for finite float32 ``t <= 0`` (0 below -87.3): Cephes ``expf``."""
    c = max(t, _EXP_MIN)
    k = np.floor(c * _LOG2E + np.float32(0.5))
    r = c - k * _LN2_HI - k * _LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = p * r * r + r + np.float32(1.0)
    scale = np.int32((np.int32(k) + np.int32(127)) << np.int32(23)).view(np.float32)
    return np.float32(0.0) if t < _EXP_MIN else y * scale


@fastjit
def _exp_sum32(x: np.ndarray, m: Any, out: np.ndarray) -> Any:
    s = 0.0  # float64: the sum of up to millions of terms keeps float32's precision
    for j in range(x.shape[0]):
        e = _exp32(x[j] - m)
        out[j] = e
        s += e
    return s


@jit
def _softmax_careful(x: np.ndarray, out: np.ndarray, log: bool) -> None:
    """The reference's rules, in float64: NaN → a NaN row; +inf entries share the mass equally
    (the others get 0); all -inf → a NaN row; otherwise exp(x - max) / sum."""
    c = x.shape[0]
    m = -np.inf
    n_nan = 0
    n_pos = 0
    for j in range(c):
        v = np.float64(x[j])
        if v != v:
            n_nan += 1
        elif v > m:
            m = v
        if v == np.inf:
            n_pos += 1
    if n_nan > 0 or m == -np.inf:
        out[:] = np.nan
        return
    if n_pos > 0:
        inside = -math.log(n_pos) if log else 1.0 / n_pos
        outside = -np.inf if log else 0.0
        for j in range(c):
            out[j] = inside if x[j] == np.inf else outside
        return
    s = 0.0
    for j in range(c):
        s += math.exp(np.float64(x[j]) - m)
    if log:
        ls = math.log(s)
        for j in range(c):
            out[j] = (np.float64(x[j]) - m) - ls
    else:
        for j in range(c):
            out[j] = math.exp(np.float64(x[j]) - m) / s


@jit
def _softmax_fast32(x: np.ndarray, xi: np.ndarray, out: np.ndarray, log: bool) -> None:
    m = _max32(xi)
    s = _exp_sum32(x, m, out)
    if log:
        ls = np.float32(math.log(s))
        for j in range(x.shape[0]):
            out[j] = (x[j] - m) - ls
    else:
        inv = np.float32(1.0 / s)
        for j in range(x.shape[0]):
            out[j] *= inv


@jit
def _softmax_f32(x: np.ndarray, out: np.ndarray, log: bool) -> None:
    xi = x.view(np.int32)
    for i in range(x.shape[0]):
        if math.isfinite(_sum32(x[i])):
            _softmax_fast32(x[i], xi[i], out[i], log)
        else:
            _softmax_careful(x[i], out[i], log)


@jit
def _softmax_f64(x: np.ndarray, out: np.ndarray, log: bool) -> None:
    for i in range(x.shape[0]):
        _softmax_careful(x[i], out[i], log)


def softmax_rows(x: np.ndarray, out: np.ndarray, log: bool) -> None:
    """Softmax (or log-softmax) of each row of C-contiguous ``x`` into ``out``."""
    if x.dtype == np.float32:
        _softmax_f32(x, out, log)
    else:
        _softmax_f64(x, out, log)


@fastjit
def _sigmoid_fast32(x: np.ndarray, out: np.ndarray) -> None:
    for j in range(x.shape[0]):
        v = x[j]
        e = _exp32(-abs(v))
        d = np.float32(1.0) / (np.float32(1.0) + e)
        out[j] = d if v >= 0 else e * d


@jit
def _sigmoid_careful(x: np.ndarray, out: np.ndarray) -> None:
    for j in range(x.shape[0]):
        v = np.float64(x[j])
        if v != v:
            out[j] = np.nan
        elif v >= 0:
            out[j] = 1.0 / (1.0 + math.exp(-v))
        else:
            e = math.exp(v)
            out[j] = e / (1.0 + e)


@jit
def _sigmoid_f32(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        if math.isfinite(_sum32(x[i])):
            _sigmoid_fast32(x[i], out[i])
        else:
            _sigmoid_careful(x[i], out[i])


@jit
def _sigmoid_f64(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        _sigmoid_careful(x[i], out[i])


def sigmoid_rows(x: np.ndarray, out: np.ndarray) -> None:
    if x.dtype == np.float32:
        _sigmoid_f32(x, out)
    else:
        _sigmoid_f64(x, out)


@jit
def _order_keys(x: np.ndarray, keys: np.ndarray) -> None:
    """int64 keys in the order of ``x``'s values (a larger key ranks first): the sign-magnitude
    bit pattern made two's complement, -0.0 equal to 0.0, every NaN above +inf."""
    if x.itemsize == 4:
        xi32 = x.view(np.int32)
        for j in range(x.shape[0]):
            v = np.int64(xi32[j])
            k = v ^ ((v >> 31) & 0x7FFFFFFF)
            keys[j] = _NAN_KEY if (v & 0x7FFFFFFF) > 0x7F800000 else (0 if k == -1 else k)
    else:
        xi64 = x.view(np.int64)
        for j in range(x.shape[0]):
            v = xi64[j]
            k = v ^ ((v >> 63) & 0x7FFFFFFFFFFFFFFF)
            keys[j] = _NAN_KEY if (v & 0x7FFFFFFFFFFFFFFF) > 0x7FF0000000000000 else (0 if k == -1 else k)


@jit
def _topk_insert(keys: np.ndarray, k: int, top: np.ndarray, idx: np.ndarray) -> None:
    """Insertion into ``k`` sorted slots; strictly larger only, so ties keep the lower index."""
    n = 0
    for j in range(keys.shape[0]):
        v = keys[j]
        if n < k:
            pos = n
            n += 1
        elif v > top[k - 1]:
            pos = k - 1
        else:
            continue
        while pos > 0 and v > top[pos - 1]:
            top[pos] = top[pos - 1]
            idx[pos] = idx[pos - 1]
            pos -= 1
        top[pos] = v
        idx[pos] = j


@jit
def _sift_down(top: np.ndarray, idx: np.ndarray, n: int, i: int) -> None:
    """Restore the heap below ``i``: each parent ranks after its children (the worst on top);
    ``(key, index)`` ranks after another when its key is smaller, or equal with a higher index."""
    while True:
        worst = i
        for child in range(2 * i + 1, min(2 * i + 3, n)):
            if top[child] < top[worst] or (top[child] == top[worst] and idx[child] > idx[worst]):
                worst = child
        if worst == i:
            return
        top[i], top[worst] = top[worst], top[i]
        idx[i], idx[worst] = idx[worst], idx[i]
        i = worst


@jit
def _topk_heap(keys: np.ndarray, k: int, top: np.ndarray, idx: np.ndarray) -> None:
    """A heap of the best ``k`` so far, the worst on top (O(C log k)), then heap-sorted."""
    for j in range(k):
        top[j] = keys[j]
        idx[j] = j
    for i in range(k // 2 - 1, -1, -1):
        _sift_down(top, idx, k, i)
    for j in range(k, keys.shape[0]):
        if keys[j] > top[0]:  # equal to the worst: the worst has the lower index and stays
            top[0] = keys[j]
            idx[0] = j
            _sift_down(top, idx, k, 0)
    for n in range(k - 1, 0, -1):  # move the worst to the back, best first
        top[0], top[n] = top[n], top[0]
        idx[0], idx[n] = idx[n], idx[0]
        _sift_down(top, idx, n, 0)


@jit
def topk_rows(x: np.ndarray, vals: np.ndarray, idx: np.ndarray, k: int) -> None:
    """The ``k`` largest of each row, in descending order, ties to the lower index."""
    keys = np.empty(x.shape[1], np.int64)
    top = np.empty(k, np.int64)
    for i in range(x.shape[0]):
        _order_keys(x[i], keys)
        if k <= _HEAP_ABOVE:
            _topk_insert(keys, k, top, idx[i])
        else:
            _topk_heap(keys, k, top, idx[i])
        for j in range(k):
            vals[i, j] = x[i, idx[i, j]]


@jit
def threshold_row(x: np.ndarray, threshold: float, mask: np.ndarray) -> np.ndarray:
    """``mask = x > threshold`` (``threshold`` of ``x``'s dtype) and the indices where it holds,
    ascending (NaN is never above)."""
    n = 0
    for j in range(x.shape[0]):
        above = x[j] > threshold
        mask[j] = above
        n += above
    idx = np.empty(n, np.int64)
    n = 0
    for j in range(x.shape[0]):
        if mask[j]:
            idx[n] = j
            n += 1
    return idx


def as_rows(fn: Callable[..., None], x: Any, outs: tuple[Any, ...], *args: Any) -> None:
    """Run the row kernel ``fn(x2d, *outs2d, *args)`` over one sample (1-D arrays), a dense batch
    (2-D arrays) or a ragged batch (lists of 1-D arrays); outputs are written in place."""
    if isinstance(x, list):
        for i, xi in enumerate(x):
            as_rows(fn, xi, tuple(o[i] for o in outs), *args)
        return
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
    views = [o.reshape(-1, o.shape[-1]) if o.flags.c_contiguous else np.empty((x2.shape[0], o.shape[-1]), o.dtype) for o in outs]
    fn(x2, *views, *args)
    for o, v in zip(outs, views):
        if not np.shares_memory(o, v):
            o[...] = v.reshape(o.shape)
