"""What the classification ops share: the logits spec and random test rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._spec import TensorSpec

__all__ = ["LOGIT_DTYPES", "Meta", "random_scores", "scores_spec", "same_as_input"]

#: dtypes of logits and scores: what models emit (float16/bfloat16: cast to float32 first)
LOGIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

Meta = list[tuple[tuple[int, ...], np.dtype]]


def scores_spec(name: str = "logits", doc: str = "") -> TensorSpec:
    return TensorSpec(name, LOGIT_DTYPES, "C", doc or "one score per class (a batch: N C)")


def same_as_input(x: np.ndarray, **_: Any) -> Meta:
    return [(x.shape, x.dtype)]


def random_scores(rng: np.random.Generator, dtype: Any, *, nonfinite: bool = True) -> np.ndarray:
    """A random row of class scores: 1 to 300 classes, small or huge (±1e4, mixed) values, ties,
    and now and then -inf, +inf and NaN entries."""
    c = int(rng.choice([1, 2, 3, 5, 10, 1000])) if rng.random() < 0.3 else int(rng.integers(1, 300))
    scale = float(rng.choice([1.0, 10.0, 1e4]))
    x = rng.standard_normal(c) * scale
    if rng.random() < 0.25:  # ties: few distinct values
        x = np.round(x / scale * 2) * scale
    if rng.random() < 0.2:  # mixed: huge and ordinary values in one row
        x[rng.random(c) < 0.5] += float(rng.choice([-1e4, 1e4]))
    if nonfinite and rng.random() < 0.3:
        for value in rng.choice([-np.inf, np.inf, np.nan], size=int(rng.integers(1, 4))):
            x[rng.integers(0, c)] = value
    return x.astype(dtype)
