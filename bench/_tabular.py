"""Benchmark rows for the tabular ops: twinpipe first, then its peers, on 1M-row columns.

``rows()`` gives ``(task, implementation, fn)`` for ``bench/ops_cpu.py``; run this file on its
own (``.venv/bin/python bench/_tabular.py [--repeat N]``) to print the rows' median times and
their ratios to twinpipe. Peers: NumPy and torch for the numeric ops; for string hashing the
``xxhash`` package (the same XXH64, one C call per string) when installed, and a pure-Python
``hashlib`` (blake2b, 8 bytes) loop; for vocabulary lookup a Python ``dict.get`` loop.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _table import print_table

from twinpipe.ops import tabular

N = 1_000_000


def _strings(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[bytes]]:
    ids = rng.zipf(1.3, n) % 25_000
    words = [f"item_{i}".encode() for i in ids]
    col = np.empty(n, object)
    col[:] = words
    return col, words


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A NumPy-only integer hash (splitmix64's finaliser): the floor for hashing ints in NumPy."""
    z = x.view(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rows() -> list[tuple[str, str, Callable[[], Any]]]:
    rng = np.random.default_rng(0)
    x = (rng.gamma(4.0, 6.0, N) + 16).astype(np.float32)
    xt = torch.from_numpy(x)
    boundaries = np.quantile(x, np.arange(1, 16) / 16)
    bt = torch.from_numpy(boundaries.astype(np.float32))
    col, words = _strings(rng, N)
    ids = rng.integers(0, 2**40, N)
    vocab = [f"item_{i}".encode() for i in range(20_000)]
    index = {v: i for i, v in enumerate(vocab)}
    small = rng.integers(0, 32, N)

    standardize = tabular.standardize.bind(mean=40.0, std=12.0)
    bucketize = tabular.bucketize.bind(boundaries=boundaries.tolist())
    hash_strings = tabular.hash_bucket.bind(num_buckets=100_000)
    lookup = tabular.vocab_lookup.bind(vocabulary=vocab, num_oov=16)
    one_hot = tabular.one_hot.bind(depth=32)

    out: list[tuple[str, str, Callable[[], Any]]] = [
        ("standardize 1M float32", "twinpipe", lambda: standardize(x)),
        ("standardize 1M float32", "numpy (x - mean) / std", lambda: (x - 40.0) / 12.0),
        ("standardize 1M float32", "torch (x - mean) / std", lambda: (xt - 40.0) / 12.0),
        ("bucketize 1M float32, 15 boundaries", "twinpipe", lambda: bucketize(x)),
        ("bucketize 1M float32, 15 boundaries", "numpy.digitize", lambda: np.digitize(x, boundaries)),
        ("bucketize 1M float32, 15 boundaries", "torch.bucketize", lambda: torch.bucketize(xt, bt, right=True)),
        ("hash bucket 1M strings", "twinpipe (XXH64)", lambda: hash_strings(col)),
    ]
    try:
        import xxhash

        out.append(("hash bucket 1M strings", "xxhash package loop",
                    lambda: [xxhash.xxh64_intdigest(w) % 100_000 for w in words]))
    except ImportError:
        pass
    out += [
        ("hash bucket 1M strings", "hashlib blake2b loop",
         lambda: [int.from_bytes(hashlib.blake2b(w, digest_size=8).digest(), "little") % 100_000 for w in words]),
        ("hash bucket 1M int64", "twinpipe (XXH64)", lambda: hash_strings(ids)),
        ("hash bucket 1M int64", "numpy splitmix64 % n", lambda: _splitmix64(ids) % np.uint64(100_000)),
        ("vocab lookup 1M strings, 20k vocab", "twinpipe", lambda: lookup(col)),
        ("vocab lookup 1M strings, 20k vocab", "python dict.get loop", lambda: np.array([index.get(w, -1) for w in words])),
        ("one-hot 1M, depth 32", "twinpipe", lambda: one_hot(small)),
        ("one-hot 1M, depth 32", "torch F.one_hot", lambda: F.one_hot(torch.from_numpy(small), 32).float()),
        ("one-hot 1M, depth 32", "numpy eye[index]", lambda: np.eye(32, dtype=np.float32)[small]),
    ]
    return out


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print_table(rows(), args.repeat, "1 thread")


if __name__ == "__main__":
    main()
