"""One-hot and multi-hot encodings of integer indices (bucket, hash or vocabulary ids)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._params import Bool, Choice, Int, Param
from ._column import INTS, ColumnOp, column_spec
from ._xxh64 import jit

__all__ = ["multi_hot", "one_hot"]

DTYPES = ("float32", "int64", "uint8")
Meta = list[tuple[tuple[int, ...], np.dtype]]


def _index_examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    return (np.asarray(rng.integers(-3, 12), dtype),)


def _list_examples(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    k = int(rng.choice([0, 1, 2, 5, 9]))
    return (rng.integers(-3, 12, k).astype(dtype),)


def _encode_params(rng: np.random.Generator, x: np.ndarray) -> dict[str, Any]:
    return {"depth": int(rng.integers(1, 11)), "dtype": str(rng.choice(DTYPES))}


# -- one-hot ------------------------------------------------------------------------------------


def _one_hot_reference(x: np.ndarray, *, depth: int, dtype: str) -> np.ndarray:
    a = np.asarray(x)
    return (a[..., None] == np.arange(depth)).astype(dtype)


def _one_hot_infer(x: np.ndarray, *, depth: int, dtype: str) -> Meta:
    return [((*np.shape(x), depth), np.dtype(dtype))]


@jit
def _one_hot_kernel(x: np.ndarray, out: np.ndarray) -> None:
    depth = out.shape[1]
    out[:] = 0
    for i in range(x.shape[0]):
        k = x[i]
        if 0 <= k < depth:
            out[i, k] = 1


one_hot = ColumnOp(
    "tabular.one_hot",
    doc="""Each index as a one-hot row of ``depth``: ``1`` at the index, ``0`` elsewhere.

The output is the input's shape plus a last axis of ``depth`` (``[N]`` → ``[N, depth]``), in
``dtype`` (float32, int64 or uint8). An index outside ``[0, depth)`` — negative (e.g. the ``-1``
of an unknown or missing value) or too large — gives a row of zeros, as TensorFlow's
``tf.one_hot`` (``torch.nn.functional.one_hot`` raises instead).""",
    inputs=[column_spec("index", INTS, "", "an integer column: [N], or any shape")],
    outputs=[column_spec("onehot", (np.float32, np.int64, np.uint8), "depth", "the input's shape + [depth]")],
    params=[
        Param("depth", Int(min=1), doc="number of classes: the length of each row"),
        Param("dtype", Choice(DTYPES), "float32", doc="the output dtype"),
    ],
    reference=_one_hot_reference,
    infer=_one_hot_infer,
    example_params=_encode_params,
    example_inputs=_index_examples,
)


@one_hot.kernel("cpu")
def _one_hot_cpu(x: np.ndarray, *, out: np.ndarray, depth: int, dtype: str) -> None:
    _one_hot_kernel(np.asarray(x).reshape(-1), out.reshape(-1, depth))


# -- multi-hot ----------------------------------------------------------------------------------


def _multi_hot_reference(x: np.ndarray, *, depth: int, counts: bool, dtype: str) -> np.ndarray:
    a = np.asarray(x)
    n = (a[..., None] == np.arange(depth)).sum(axis=-2)  # int64 counts per class
    if not counts:
        n = np.minimum(n, 1)
    elif dtype == "uint8":
        n = np.minimum(n, 255)
    return n.astype(dtype)


def _multi_hot_infer(x: np.ndarray, *, depth: int, counts: bool, dtype: str) -> Meta:
    return [((*np.shape(x)[:-1], depth), np.dtype(dtype))]


@jit
def _multi_hot_kernel(x: np.ndarray, counts: bool, cap: float, out: np.ndarray) -> None:
    depth = out.shape[1]
    out[:] = 0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            k = x[i, j]
            if 0 <= k < depth:
                if not counts:
                    out[i, k] = 1
                elif out[i, k] < cap:
                    out[i, k] += 1


multi_hot = ColumnOp(
    "tabular.multi_hot",
    doc="""Each list of indices as one row of ``depth``: which classes it holds (or how often).

The input's last axis is the list (``[N, K]`` → ``[N, depth]``; one list ``[K]`` → ``[depth]``).
Without ``counts`` an entry is ``1`` if the index occurs in the list at all, else ``0``; with
``counts`` it is the number of occurrences (saturating at 255 for uint8). Indices outside
``[0, depth)`` are skipped — pad ragged lists with ``-1``. An empty list (``K = 0``) gives zeros.
The output dtype is ``dtype`` (float32, int64 or uint8).""",
    inputs=[column_spec("index", INTS, "K", "integer lists: [N, K], or [K], or any shape")],
    outputs=[column_spec("multihot", (np.float32, np.int64, np.uint8), "depth", "the input's shape with K replaced by depth")],
    params=[
        Param("depth", Int(min=1), doc="number of classes: the length of each row"),
        Param("counts", Bool(), False, doc="count occurrences instead of marking presence"),
        Param("dtype", Choice(DTYPES), "float32", doc="the output dtype"),
    ],
    reference=_multi_hot_reference,
    infer=_multi_hot_infer,
    example_params=lambda rng, x: {**_encode_params(rng, x), "counts": bool(rng.random() < 0.5)},
    example_inputs=_list_examples,
)


@multi_hot.kernel("cpu")
def _multi_hot_cpu(x: np.ndarray, *, out: np.ndarray, depth: int, counts: bool, dtype: str) -> None:
    a = np.asarray(x)
    k = a.shape[-1]
    cap = 255.0 if dtype == "uint8" else np.inf
    rows = int(np.prod(a.shape[:-1], dtype=np.int64))
    _multi_hot_kernel(a.reshape(rows, k), counts, cap, out.reshape(rows, depth))
