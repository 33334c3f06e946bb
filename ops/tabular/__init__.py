"""Tabular ops: the feature pre-processing of recommendation models.

Numbers: ``standardize``, ``min_max_scale``, ``log1p``, ``clip``, ``bucketize``; categories:
``hash_bucket``, ``vocab_lookup`` (with out-of-vocabulary buckets), ``one_hot``, ``multi_hot``;
and ``fill_missing`` for both. Every op takes a **column** — one feature for a whole batch, ``[N]``
(or ``[N, K]`` for list features) — and runs it through its kernel in one call; strings are BYTES
columns (object arrays of ``bytes``). See ``_column`` for the batching rules.

Parameters learned from data (mean/std, min/max, boundaries, vocabularies, fill values) live in
one JSON stats file that training writes and serving reads::

    from twinpipe.ops import tabular

    stats = tabular.fit({"age": ages, "country": countries},
                        {"age": tabular.Numeric(buckets=8), "country": tabular.Categorical(max_size=200)})
    tabular.save_stats(stats, "stats.json")
    z = tabular.standardize(ages, stats="stats.json", feature="age")
    ids = tabular.vocab_lookup(countries, stats="stats.json", feature="country", num_oov=4)

Hashes (``hash_bucket``, OOV buckets) are XXH64 — stable across processes, machines and Python
versions.
"""

from ._bucketize import bucketize, fill_missing
from ._encode import multi_hot, one_hot
from ._fit import Categorical, Numeric, fit
from ._hash import hash_bucket, vocab_lookup
from ._scale import clip, log1p, min_max_scale, standardize
from ._stats import CategoricalStats, NumericStats, Stats, StatsError, load_stats, save_stats
from ._xxh64 import xxh64

__all__ = [
    "Categorical",
    "CategoricalStats",
    "Numeric",
    "NumericStats",
    "Stats",
    "StatsError",
    "bucketize",
    "clip",
    "fill_missing",
    "fit",
    "hash_bucket",
    "load_stats",
    "log1p",
    "min_max_scale",
    "multi_hot",
    "one_hot",
    "save_stats",
    "standardize",
    "vocab_lookup",
    "xxh64",
]
