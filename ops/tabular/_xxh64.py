"""XXH64, the 64-bit xxHash (Yann Collet, spec: ``doc/xxhash_spec.md`` of the xxHash repository).

The hash of the tabular ops. It depends on the bytes alone — never on the process, the machine,
its byte order or the Python version (unlike ``hash()``, which is salted per process) — so a
bucket computed in training is the bucket computed in serving. Two implementations, which must
agree bit for bit: a pure-Python one (the reference, short and readable) and Numba kernels over
a packed column (one ``uint8`` buffer plus offsets) and over ``int64`` values.

What is hashed:

* a string (a BYTES element) — its bytes, as they are (never decoded, so invalid UTF-8 is fine);
* an integer — the 8 bytes of its two's-complement ``int64`` value, little-endian (``int32``
  values are widened first, so ``int32(5)`` and ``int64(5)`` hash alike; the integer ``5`` and
  the string ``"5"`` do not).

``xxh64(data, seed)`` equals ``xxhash.xxh64_intdigest(data, seed)`` of the ``xxhash`` package.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

__all__ = ["U0", "hash_ints", "hash_packed", "jit", "xxh64", "xxh64_int", "xxh64_span", "xxh64_u64"]

F = TypeVar("F", bound=Callable[..., Any])

#: Numba's njit as every CPU kernel uses it: cached on disk, releasing the GIL.
jit = cast(Callable[[F], F], functools.partial(numba.njit, cache=True, nogil=True))

_M = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (
    0x9E3779B185EBCA87,
    0xC2B2AE3D27D4EB4F,
    0x165667B19E3779F9,
    0x85EBCA77C2B2AE63,
    0x27D4EB2F165667C5,
)


# -- the reference: plain Python integers, masked to 64 bits ------------------------------------


def _rotl_py(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round_py(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _M
    return (_rotl_py(acc, 31) * _P1) & _M


def _merge_py(acc: int, lane: int) -> int:
    acc ^= _round_py(0, lane)
    return (acc * _P1 + _P4) & _M


def _avalanche_py(h: int) -> int:
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    return h ^ (h >> 32)


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 of ``data`` with ``seed`` (0 ≤ seed < 2**64), as an unsigned 64-bit integer."""
    n = len(data)
    seed &= _M
    p = 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed, (seed - _P1) & _M]
        while p + 32 <= n:
            for k in range(4):
                v[k] = _round_py(v[k], int.from_bytes(data[p + 8 * k : p + 8 * k + 8], "little"))
            p += 32
        h = (_rotl_py(v[0], 1) + _rotl_py(v[1], 7) + _rotl_py(v[2], 12) + _rotl_py(v[3], 18)) & _M
        for k in range(4):
            h = _merge_py(h, v[k])
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while p + 8 <= n:
        h ^= _round_py(0, int.from_bytes(data[p : p + 8], "little"))
        h = (_rotl_py(h, 27) * _P1 + _P4) & _M
        p += 8
    if p + 4 <= n:
        h ^= (int.from_bytes(data[p : p + 4], "little") * _P1) & _M
        h = (_rotl_py(h, 23) * _P2 + _P3) & _M
        p += 4
    while p < n:
        h ^= (data[p] * _P5) & _M
        h = (_rotl_py(h, 11) * _P1) & _M
        p += 1
    return _avalanche_py(h)


def xxh64_int(value: int, seed: int = 0) -> int:
    """XXH64 of an integer: of the 8 little-endian bytes of its two's-complement int64 value."""
    return xxh64((int(value) & _M).to_bytes(8, "little"), seed)


# -- the kernels: uint64 arithmetic wraps like the C code ---------------------------------------

P1, P2, P3, P4, P5 = (np.uint64(p) for p in (_P1, _P2, _P3, _P4, _P5))
U0, U1, U7, U8, U11, U12, U16, U18 = (np.uint64(r) for r in (0, 1, 7, 8, 11, 12, 16, 18))
U23, U24, U27, U29, U31, U32, U33 = (np.uint64(r) for r in (23, 24, 27, 29, 31, 32, 33))
U40, U48, U56 = (np.uint64(r) for r in (40, 48, 56))
U64 = np.uint64(64)


@jit
def _rotl(x: np.uint64, r: np.uint64) -> np.uint64:
    return (x << r) | (x >> (U64 - r))


@jit
def _round(acc: np.uint64, lane: np.uint64) -> np.uint64:
    acc = acc + lane * P2
    return _rotl(acc, U31) * P1


@jit
def _read64(buf: np.ndarray, p: int) -> np.uint64:
    return (
        np.uint64(buf[p])
        | (np.uint64(buf[p + 1]) << U8)
        | (np.uint64(buf[p + 2]) << U16)
        | (np.uint64(buf[p + 3]) << U24)
        | (np.uint64(buf[p + 4]) << U32)
        | (np.uint64(buf[p + 5]) << U40)
        | (np.uint64(buf[p + 6]) << U48)
        | (np.uint64(buf[p + 7]) << U56)
    )


@jit
def _avalanche(h: np.uint64) -> np.uint64:
    h ^= h >> U33
    h *= P2
    h ^= h >> U29
    h *= P3
    return h ^ (h >> U32)


@jit
def xxh64_span(buf: np.ndarray, start: int, end: int, seed: np.uint64) -> np.uint64:
    """XXH64 of ``buf[start:end]`` (a ``uint8`` array)."""
    n = end - start
    p = start
    if n >= 32:
        v1 = seed + P1 + P2
        v2 = seed + P2
        v3 = seed
        v4 = seed - P1
        while p + 32 <= end:
            v1 = _round(v1, _read64(buf, p))
            v2 = _round(v2, _read64(buf, p + 8))
            v3 = _round(v3, _read64(buf, p + 16))
            v4 = _round(v4, _read64(buf, p + 24))
            p += 32
        h = _rotl(v1, U1) + _rotl(v2, U7) + _rotl(v3, U12) + _rotl(v4, U18)
        h = (h ^ _round(U0, v1)) * P1 + P4
        h = (h ^ _round(U0, v2)) * P1 + P4
        h = (h ^ _round(U0, v3)) * P1 + P4
        h = (h ^ _round(U0, v4)) * P1 + P4
    else:
        h = seed + P5
    h += np.uint64(n)
    while p + 8 <= end:
        h ^= _round(U0, _read64(buf, p))
        h = _rotl(h, U27) * P1 + P4
        p += 8
    if p + 4 <= end:
        lane = np.uint64(buf[p]) | (np.uint64(buf[p + 1]) << U8) | (np.uint64(buf[p + 2]) << U16) | (np.uint64(buf[p + 3]) << U24)
        h ^= lane * P1
        h = _rotl(h, U23) * P2 + P3
        p += 4
    while p < end:
        h ^= np.uint64(buf[p]) * P5
        h = _rotl(h, U11) * P1
        p += 1
    return _avalanche(h)


@jit
def xxh64_u64(value: np.uint64, seed: np.uint64) -> np.uint64:
    """XXH64 of the 8 little-endian bytes of ``value``: the 8-byte path of ``xxh64_span``."""
    h = seed + P5 + U8
    h ^= _round(U0, value)
    h = _rotl(h, U27) * P1 + P4
    return _avalanche(h)


@jit
def hash_packed(buf: np.ndarray, offsets: np.ndarray, seed: np.uint64, out: np.ndarray) -> None:
    """``out[i]`` = XXH64 of string ``i``, the bytes ``buf[offsets[i]:offsets[i + 1]]``."""
    for i in range(offsets.shape[0] - 1):
        out[i] = xxh64_span(buf, offsets[i], offsets[i + 1], seed)


@jit
def hash_ints(values: np.ndarray, seed: np.uint64, out: np.ndarray) -> None:
    """``out[i]`` = XXH64 of ``values[i]`` (a ``uint64`` view of int64 values)."""
    for i in range(values.shape[0]):
        out[i] = xxh64_u64(values[i], seed)
