"""Categorical ids: hash buckets, and vocabulary lookup with out-of-vocabulary buckets.

Both hash with XXH64 (see ``_xxh64``): a string's bytes, or an integer's 8 little-endian
two's-complement bytes. The hash never depends on the process, the machine or the Python
version, so a bucket computed in a training job is the bucket a server computes.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InputError
from .._params import Int, Optional, Param
from .._spec import BYTES
from ._column import ColumnOp, Values, column_spec, example_strings, pack_strings, strings
from ._source import check_source, feature_stats, source_params
from ._stats import CategoricalStats
from ._xxh64 import U0, hash_ints, hash_packed, jit, xxh64, xxh64_int, xxh64_span, xxh64_u64

__all__ = ["hash_bucket", "vocab_lookup"]

KEYS = (BYTES, np.dtype(np.int32), np.dtype(np.int64))
Meta = list[tuple[tuple[int, ...], np.dtype]]


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x.astype(BYTES) if x.dtype.kind in "SU" else x
    a = np.empty((), BYTES)
    a[()] = x
    return a


def _infer(x: Any, **_: Any) -> Meta:
    return [(np.shape(x) if isinstance(x, np.ndarray) else (), np.dtype(np.int64))]


def _ints(a: np.ndarray) -> np.ndarray:
    """An int column as the ``uint64`` bit patterns of its int64 values, flattened."""
    return a.astype(np.int64).reshape(-1).view(np.uint64)


def _examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[Any]:
    dt = np.dtype(dtype)
    if dt == BYTES:
        return (example_strings(rng, 1, pool=[b"us", b"de", "日本".encode()])[0],)
    info = np.iinfo(dt)
    v = rng.integers(info.min, info.max, endpoint=True) if rng.random() < 0.5 else rng.integers(-3, 10)
    return (np.asarray(v, dt),)


# -- hash bucket --------------------------------------------------------------------------------


def _hash_reference(x: Any, *, num_buckets: int, seed: int) -> np.ndarray:
    a = _as_array(x)
    if a.dtype == BYTES:
        hashes = [xxh64(s, seed) for s in strings(a, "tabular.hash_bucket")]
    else:
        hashes = [xxh64_int(int(v), seed) for v in a.reshape(-1)]
    return np.array([h % num_buckets for h in hashes], np.int64).reshape(a.shape)


@jit
def _bucket_strings(buf: np.ndarray, offsets: np.ndarray, seed: np.uint64, n: np.uint64, out: np.ndarray) -> None:
    for i in range(offsets.shape[0] - 1):
        out[i] = np.int64(xxh64_span(buf, offsets[i], offsets[i + 1], seed) % n)


@jit
def _bucket_ints(values: np.ndarray, seed: np.uint64, n: np.uint64, out: np.ndarray) -> None:
    for i in range(values.shape[0]):
        out[i] = np.int64(xxh64_u64(values[i], seed) % n)


hash_bucket = ColumnOp(
    "tabular.hash_bucket",
    doc="""``xxh64(value, seed) % num_buckets``: a stable int64 bucket in ``[0, num_buckets)``.

XXH64 is the 64-bit xxHash (equal to ``xxhash.xxh64_intdigest(data, seed)``); the modulo is
taken on the unsigned 64-bit hash. A string is hashed as its bytes (a missing string — ``None``
or ``b""`` — is the empty string; invalid UTF-8 is hashed as it is); an integer as the 8
little-endian bytes of its two's-complement int64 value (so ``int32`` and ``int64`` agree, and
the integer 5 and the string "5" differ). The result depends on the value, ``seed`` and
``num_buckets`` only — never on the process (unlike Python's ``hash()``), the machine or the
Python version.""",
    inputs=[column_spec("x", KEYS, "", "a string (BYTES) or integer column: [N], or any shape")],
    outputs=[column_spec("bucket", (np.int64,), "", "same shape as x")],
    params=[
        Param("num_buckets", Int(min=1), doc="how many buckets"),
        Param("seed", Int(min=0), 0, doc="XXH64 seed: another seed, another (independent) bucketing"),
    ],
    reference=_hash_reference,
    infer=_infer,
    example_params=lambda rng, x: {"num_buckets": int(rng.choice([1, 2, 7, 1000, 2**40])), "seed": int(rng.choice([0, 1, 2**62]))},
    example_inputs=_examples,
)


@hash_bucket.kernel("cpu")
def _hash_cpu(x: Any, *, out: np.ndarray, num_buckets: int, seed: int) -> None:
    a = _as_array(x)
    flat = out.reshape(-1)
    if a.dtype == BYTES:
        buf, offsets = pack_strings(a, "tabular.hash_bucket")
        _bucket_strings(buf, offsets, np.uint64(seed), np.uint64(num_buckets), flat)
    else:
        _bucket_ints(_ints(a), np.uint64(seed), np.uint64(num_buckets), flat)


# -- vocabulary lookup --------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A vocabulary as an open-addressing hash table (XXH64, linear probing, load <= 1/2)."""

    strings: bool
    index: dict[Any, int]  # value → position, for the reference
    hits: dict[Any, int]  # the same without b"" (which missing_index may claim), for the fast path
    buf: np.ndarray  # strings: the vocabulary packed (uint8) …
    offsets: np.ndarray  # … and its offsets; ints: unused (empty)
    keys: np.ndarray  # ints: the values as uint64 bit patterns; strings: unused (empty)
    hashes: np.ndarray  # XXH64 of each entry (seed 0)
    slots: np.ndarray  # int64 positions, -1 where empty; a power of two long

    @property
    def size(self) -> int:
        return len(self.index)


@jit
def _fill_slots(hashes: np.ndarray, slots: np.ndarray) -> None:
    mask = np.uint64(slots.shape[0] - 1)
    for k in range(hashes.shape[0]):
        j = np.int64(hashes[k] & mask)
        while slots[j] >= 0:
            j = (j + 1) & (slots.shape[0] - 1)
        slots[j] = k


def build_table(vocabulary: tuple[Any, ...], strings_hint: bool) -> Table:
    is_strings = isinstance(vocabulary[0], bytes) if vocabulary else strings_hint
    empty_u8, empty_i64 = np.zeros(0, np.uint8), np.zeros(0, np.int64)
    hashes = np.empty(len(vocabulary), np.uint64)
    if is_strings:
        col = np.empty(len(vocabulary), BYTES)
        col[:] = list(vocabulary)
        buf, offsets = pack_strings(col, "tabular.vocab_lookup")
        keys = empty_u8.view(np.uint64)[:0]
        hash_packed(buf, offsets, U0, hashes)
    else:
        buf, offsets = empty_u8, empty_i64
        keys = np.array(vocabulary, np.int64).view(np.uint64)
        hash_ints(keys, U0, hashes)
    cap = 1
    while cap < 2 * len(vocabulary):
        cap *= 2
    slots = np.full(cap, -1, np.int64)
    _fill_slots(hashes, slots)
    index = {v: i for i, v in enumerate(vocabulary)}
    hits = {v: i for v, i in index.items() if v != b""}
    return Table(is_strings, index, hits, buf, offsets, keys, hashes, slots)


@functools.lru_cache(maxsize=64)
def _literal_table(vocabulary: tuple[Any, ...], strings_hint: bool) -> Table:
    return build_table(vocabulary, strings_hint)


# a bound op passes the same vocabulary tuple on every call: find its table by identity first,
# without hashing a long tuple per call (the entry keeps the tuple alive, so its id stays unique)
_BY_ID: dict[tuple[int, bool], tuple[tuple[Any, ...], Table]] = {}


def _table(params: dict[str, Any], strings_hint: bool) -> Table:
    if params["stats"] is None:
        vocabulary = params["vocabulary"]
        entry = _BY_ID.get((id(vocabulary), strings_hint))
        if entry is not None and entry[0] is vocabulary:
            return entry[1]
        table = _literal_table(vocabulary, strings_hint)
        if len(_BY_ID) >= 256:
            _BY_ID.pop(next(iter(_BY_ID)), None)
        _BY_ID[(id(vocabulary), strings_hint)] = (vocabulary, table)
        return table
    f = feature_stats(params, CategoricalStats, "tabular.vocab_lookup")
    key = f"table/{strings_hint}"
    cached = f._cache.get(key)
    if cached is None:
        cached = f._cache.setdefault(key, build_table(f.vocabulary, strings_hint))
    assert isinstance(cached, Table)
    return cached


def _check_kind(table: Table, a: np.ndarray) -> None:
    if table.strings != (a.dtype == BYTES):
        have = "strings" if table.strings else "integers"
        raise InputError(f"tabular.vocab_lookup: the vocabulary holds {have}, the input is {'bytes' if a.dtype == BYTES else a.dtype}")


@jit
def _lookup_strings(buf: np.ndarray, offsets: np.ndarray, kbuf: np.ndarray, koffsets: np.ndarray, khash: np.ndarray,
                    slots: np.ndarray, num_oov: int, missing: int, use_missing: bool, out: np.ndarray) -> None:
    mask = np.uint64(slots.shape[0] - 1)
    size = khash.shape[0]
    for i in range(offsets.shape[0] - 1):
        s, e = offsets[i], offsets[i + 1]
        if use_missing and e == s:
            out[i] = missing
            continue
        h = xxh64_span(buf, s, e, U0)
        j = np.int64(h & mask)
        found = -1
        while slots[j] >= 0:
            k = slots[j]
            if khash[k] == h and koffsets[k + 1] - koffsets[k] == e - s:
                ks = koffsets[k]
                same = True
                for t in range(e - s):
                    if buf[s + t] != kbuf[ks + t]:
                        same = False
                        break
                if same:
                    found = k
                    break
            j = (j + 1) & (slots.shape[0] - 1)
        if found >= 0:
            out[i] = found
        elif num_oov > 0:
            out[i] = size + np.int64(h % np.uint64(num_oov))
        else:
            out[i] = -1


@jit
def _lookup_ints(values: np.ndarray, keys: np.ndarray, khash: np.ndarray, slots: np.ndarray, num_oov: int, out: np.ndarray) -> None:
    mask = np.uint64(slots.shape[0] - 1)
    size = khash.shape[0]
    for i in range(values.shape[0]):
        v = values[i]
        h = xxh64_u64(v, U0)
        j = np.int64(h & mask)
        found = -1
        while slots[j] >= 0:
            k = slots[j]
            if keys[k] == v:
                found = k
                break
            j = (j + 1) & (slots.shape[0] - 1)
        if found >= 0:
            out[i] = found
        elif num_oov > 0:
            out[i] = size + np.int64(h % np.uint64(num_oov))
        else:
            out[i] = -1


def _lookup_reference(x: Any, **params: Any) -> np.ndarray:
    a = _as_array(x)
    table = _table(params, a.dtype == BYTES)
    _check_kind(table, a)
    size, num_oov, missing = table.size, params["num_oov"], params["missing_index"]
    values: list[Any] = strings(a, "tabular.vocab_lookup") if table.strings else [int(v) for v in a.reshape(-1)]
    out = []
    for v in values:
        if table.strings and missing is not None and v == b"":
            out.append(missing)
        elif v in table.index:
            out.append(table.index[v])
        elif num_oov > 0:
            h = xxh64(v) if table.strings else xxh64_int(v)
            out.append(size + h % num_oov)
        else:
            out.append(-1)
    return np.array(out, np.int64).reshape(a.shape)


def _lookup_check(params: dict[str, Any]) -> None:
    check_source(params, ["vocabulary"], CategoricalStats)


def _lookup_examples(rng: np.random.Generator, x: Any) -> dict[str, Any]:
    a = _as_array(x)
    if a.dtype == BYTES:
        vocab: list[Any] = list(dict.fromkeys(example_strings(rng, int(rng.integers(0, 12)), pool=[b"us", b"de"])))
        if rng.random() < 0.5 and a[()] not in vocab and isinstance(a[()], bytes):
            vocab.insert(int(rng.integers(len(vocab) + 1)), a[()])
    else:
        vocab = [int(v) for v in np.unique(rng.integers(-3, 10, int(rng.integers(0, 12))))]
        rng.shuffle(vocab)
    return {"vocabulary": vocab, "num_oov": int(rng.choice([0, 1, 3])), "missing_index": None if rng.random() < 0.5 else -1}


vocab_lookup = ColumnOp(
    "tabular.vocab_lookup",
    doc="""The int64 index of each value in a vocabulary; out-of-vocabulary values hashed after it.

A value at position ``i`` of the vocabulary gets ``i``. A value not in it gets
``len(vocabulary) + xxh64(value) % num_oov`` — one of ``num_oov`` OOV buckets after the vocabulary
(the same XXH64 as ``hash_bucket`` with seed 0), so indices lie in ``[0, len + num_oov)``; with
``num_oov = 0`` an OOV value gets ``-1``. Strings match bytewise (``str`` elements as UTF-8; invalid
UTF-8 is just bytes); a missing string (``None`` or ``b""``) is looked up as ``b""`` — an OOV value
unless the vocabulary has it — or, with ``missing_index`` set, gets that index (e.g. ``-1``, which
``multi_hot`` and ``one_hot`` skip). Integers match by value (``int32`` and ``int64`` alike). The
vocabulary is given (distinct strings or distinct integers) or read from the stats file (``fit``:
most frequent first); a string vocabulary with an integer column, or the reverse, is an error.""",
    inputs=[column_spec("x", KEYS, "", "a string (BYTES) or integer column: [N], or any shape")],
    outputs=[column_spec("index", (np.int64,), "", "same shape as x")],
    params=[
        Param("vocabulary", Optional(Values()), None, doc="the vocabulary, in index order"),
        *source_params("the vocabulary"),
        Param("num_oov", Int(min=0), 1, doc="out-of-vocabulary buckets after the vocabulary (0: OOV is -1)"),
        Param("missing_index", Optional(Int()), None, doc="the index of a missing string (None or b'')"),
    ],
    reference=_lookup_reference,
    infer=_infer,
    check=_lookup_check,
    example_params=_lookup_examples,
    example_inputs=_examples,
)


def _lookup_strings_column(a: np.ndarray, table: Table, params: dict[str, Any], out: np.ndarray) -> None:
    """Strings: a dict look-up for the (usually many) exact ``bytes`` hits, the hash table for the rest.

    Both paths give the same index; the table is the complete one (``str`` and ``None`` elements,
    missing strings, OOV buckets), the dict only the fast way to the common case.
    """
    items = a.reshape(-1).tolist()
    try:
        out[:] = np.fromiter(map(table.hits.get, items, itertools.repeat(-1)), np.int64, len(items))
        rest = np.flatnonzero(out < 0)
    except TypeError:  # an unhashable element (bytearray): all through the table
        rest = np.arange(len(items))
    if rest.size == 0:
        return
    col = a.reshape(-1)[rest] if rest.size < len(items) else a.reshape(-1)
    buf, offsets = pack_strings(col, "tabular.vocab_lookup", rest)
    missing = params["missing_index"]
    found = np.empty(rest.size, np.int64)
    _lookup_strings(buf, offsets, table.buf, table.offsets, table.hashes, table.slots, params["num_oov"],
                    0 if missing is None else missing, missing is not None, found)
    out[rest] = found


@vocab_lookup.kernel("cpu")
def _lookup_cpu(x: Any, *, out: np.ndarray, **params: Any) -> None:
    a = _as_array(x)
    table = _table(params, a.dtype == BYTES)
    _check_kind(table, a)
    flat = out.reshape(-1)
    if table.strings:
        _lookup_strings_column(a, table, params, flat)
    else:
        _lookup_ints(_ints(a), table.keys, table.hashes, table.slots, params["num_oov"], flat)
