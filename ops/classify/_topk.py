"""``classify.topk`` (the k best classes) and ``classify.threshold`` (multi-label decisions)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Float, Int, Param
from .._spec import TensorSpec
from ._common import LOGIT_DTYPES, Meta, random_scores, scores_spec
from ._kernels import as_rows, threshold_row, topk_rows

__all__ = ["threshold", "topk"]


def _topk_order(scores: np.ndarray) -> np.ndarray:
    """Every index, best first: NaN first, then descending; a stable sort, so ties keep index order."""
    nan = np.isnan(scores)
    return np.lexsort((np.where(nan, 0.0, -scores.astype(np.float64)), ~nan))


def _topk_reference(scores: np.ndarray, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    _check_k(scores, k)
    idx = _topk_order(scores)[:k].astype(np.int64)
    return scores[idx], idx


def _check_k(scores: np.ndarray, k: int) -> None:
    if k > scores.shape[-1]:
        raise InputError(f"classify.topk: k={k} is more than the {scores.shape[-1]} classes of input 'scores'")


def _topk_infer(scores: np.ndarray, *, k: int) -> Meta:
    _check_k(scores, k)
    return [((k,), scores.dtype), ((k,), np.dtype(np.int64))]


def _topk_examples(rng: np.random.Generator, scores: np.ndarray) -> dict[str, Any]:
    c = scores.shape[0]
    return {"k": int(rng.integers(1, min(c, 8) + 1)) if rng.random() < 0.6 else int(rng.integers(1, c + 1))}


topk = Op(
    "classify.topk",
    doc="""The ``k`` highest scores of each row and their class indices, best first.

Input ``[C]`` (or a batch ``[N, C]``) of logits or probabilities, float32 or float64; outputs
``values`` ``[k]`` (the input's dtype) and ``indices`` ``[k]`` (int64). Ties are broken by the
lowest index: equal scores come out in increasing class order, and a score equal to the k-th
best but of a higher index is left out (``torch.topk`` does not promise an order for ties; on
distinct scores the two agree). -0.0 and 0.0 are equal. NaN ranks above every number, +inf
included (as ``torch.topk``); NaNs among themselves in index order. ``k`` larger than ``C`` is an
error naming both (no silent clamping: the output shape stays ``[k]`` as declared); ``C = 0``
and an empty batch are errors. Exact. For names, feed ``indices`` to ``classify.labels``.""",
    inputs=[scores_spec("scores", "one score per class: logits or probabilities (a batch: N C)")],
    outputs=[
        TensorSpec("values", LOGIT_DTYPES, "k", "the k best scores, descending"),
        TensorSpec("indices", (np.int64,), "k", "their class indices"),
    ],
    params=[Param("k", Int(min=1, max=1 << 20), 5, "how many classes to keep; at most the number of classes")],
    reference=_topk_reference,
    infer=_topk_infer,
    example_params=_topk_examples,
    example_inputs=lambda rng, dtype: (random_scores(rng, dtype),),
)


@topk.kernel("cpu")
@topk.kernel("cpu", batched=True)
def _topk_cpu(scores: Any, *, out: tuple[Any, Any], k: int) -> None:
    for s in scores if isinstance(scores, list) else [scores]:
        _check_k(s, k)
    as_rows(topk_rows, scores, out, k)


def _as_dtype(threshold: float, dtype: np.dtype) -> Any:
    with np.errstate(over="ignore"):  # 1e300 as float32 is inf: nothing is above it
        return dtype.type(threshold)


def _threshold_reference(scores: np.ndarray, *, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    mask = scores > _as_dtype(threshold, scores.dtype)
    return mask, np.flatnonzero(mask).astype(np.int64)


threshold = Op(
    "classify.threshold",
    doc="""Multi-label decisions: ``mask = scores > threshold`` and the ``indices`` where it holds.

``scores`` ``[C]`` (a batch ``[N, C]``), float32 or float64: usually ``classify.sigmoid``'s
probabilities with ``threshold`` 0.5, or the raw logits with ``threshold`` 0 (the same decision,
but where rounding makes ``sigmoid`` of a logit within about 1e-7 of 0 exactly 0.5).
The comparison is strict (a score equal to the threshold is not above it, as torchmetrics'
multi-label threshold) and in the scores' dtype: ``threshold`` is first rounded to float32 for
float32 scores, as NumPy and torch compare an array with a Python number. NaN is never above.
Outputs: ``mask`` ``[C]`` bool, and ``indices`` ``[M]`` int64, the classes above the threshold
in increasing order (``M`` may be 0). In a batch ``indices`` differ in length: they come back as
a list of arrays (stacked only when every row has the same ``M``).""",
    inputs=[scores_spec("scores", "one score per class (a batch: N C)")],
    outputs=[
        TensorSpec("mask", (np.bool_,), "C", "true where the score is above the threshold"),
        TensorSpec("indices", (np.int64,), "M", "the classes above the threshold, ascending"),
    ],
    params=[Param("threshold", Float(), 0.5, "a score must be strictly above it")],
    reference=_threshold_reference,
    example_params=lambda rng, scores: {"threshold": float(rng.choice([0.0, 0.5, float(rng.standard_normal())]))},
    example_inputs=lambda rng, dtype: (random_scores(rng, dtype),),
)


@threshold.kernel("cpu")
def _threshold_cpu(scores: np.ndarray, *, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    mask = np.empty(scores.shape, np.bool_)
    idx = threshold_row(scores, _as_dtype(threshold, scores.dtype), mask)
    return mask, idx
