"""``classify.softmax``, ``classify.log_softmax`` and ``classify.sigmoid``: scores from logits."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._op import Op
from .._spec import TensorSpec
from ._common import LOGIT_DTYPES, random_scores, same_as_input, scores_spec
from ._kernels import as_rows, sigmoid_rows, softmax_rows

__all__ = ["log_softmax", "sigmoid", "softmax"]


def _softmax64(logits: np.ndarray, log: bool) -> np.ndarray:
    x = logits.astype(np.float64)
    if np.isnan(x).any() or (x == -np.inf).all():
        return np.full(x.shape, np.nan, logits.dtype)
    pos = x == np.inf
    with np.errstate(invalid="ignore", divide="ignore"):
        if pos.any():
            n = int(pos.sum())
            r = np.where(pos, -np.log(n), -np.inf) if log else np.where(pos, 1.0 / n, 0.0)
        else:
            z = x - x.max()
            s = np.exp(z).sum()
            r = z - np.log(s) if log else np.exp(z) / s
    return r.astype(logits.dtype)


_RULES = """Over the last axis: one sample is ``[C]``, a batch ``[N, C]`` (each row on its own).
Numerically stable: the row's maximum is subtracted first, so logits of ±1e4 (or any finite
size) neither overflow nor underflow the largest terms. Non-finite logits, defined per row: a
NaN anywhere makes the whole row NaN (as torch); ``-inf`` entries get {neg} while any entry is
larger; a row of only ``-inf`` is all NaN (as torch); ``+inf`` entries share the whole mass
equally — {pos} — and every other entry gets {neg} (the limit; torch gives a NaN row). The
output has the input's dtype (float32 or float64). float32 rows of finite logits use a
vectorised exp (about 1 ulp) with a float64 sum, within 2e-6 of the exact result
(`torch.{peer}` in float32 is within the same); other rows are computed in float64."""


softmax = Op(
    "classify.softmax",
    doc="Softmax: ``exp(x - max) / sum(exp(x - max))``, probabilities that sum to 1.\n\n"
    + _RULES.format(neg="0", pos="``1 / n`` for ``n`` of them", peer="softmax"),
    inputs=[scores_spec()],
    outputs=[TensorSpec("probs", LOGIT_DTYPES, "C", "probabilities, summing to 1 per row")],
    reference=lambda logits: _softmax64(logits, log=False),
    infer=same_as_input,
    tolerance={"float32": 2e-6, "float64": 1e-12},
    example_inputs=lambda rng, dtype: (random_scores(rng, dtype),),
)

log_softmax = Op(
    "classify.log_softmax",
    doc="Log-softmax: ``(x - max) - log(sum(exp(x - max)))``, without forming the probabilities "
    "(so tiny probabilities keep their logarithm instead of becoming log 0).\n\n"
    + _RULES.format(neg="``-inf``", pos="``-log(n)`` for ``n`` of them", peer="log_softmax").replace(
        "within 2e-6 of the exact result", "within 2 ulp of the largest magnitude in the row"
    ),
    inputs=[scores_spec()],
    outputs=[TensorSpec("log_probs", LOGIT_DTYPES, "C", "log-probabilities, <= 0")],
    reference=lambda logits: _softmax64(logits, log=True),
    infer=same_as_input,
    tolerance={"float32": (2e-6, 3e-7), "float64": (1e-12, 1e-15)},
    example_inputs=lambda rng, dtype: (random_scores(rng, dtype),),
)


@softmax.kernel("cpu")
@softmax.kernel("cpu", batched=True)
def _softmax_cpu(logits: Any, *, out: Any) -> None:
    as_rows(softmax_rows, logits, (out,), False)


@log_softmax.kernel("cpu")
@log_softmax.kernel("cpu", batched=True)
def _log_softmax_cpu(logits: Any, *, out: Any) -> None:
    as_rows(softmax_rows, logits, (out,), True)


def _sigmoid_reference(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))  # <= 1: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(logits.dtype)


sigmoid = Op(
    "classify.sigmoid",
    doc="""Logistic sigmoid per element, ``1 / (1 + exp(-x))``: independent probabilities for
multi-label classification (pair it with ``classify.threshold``).

Stable for any magnitude (``exp`` only of ``-|x|``): +inf gives 1, -inf gives 0, NaN gives NaN;
very negative float32 logits (below -87.3) give 0 rather than a denormal. Shape ``[C]`` or
``[N, C]``, the input's dtype; float32 within 1e-6 of the exact result (as ``torch.sigmoid``).""",
    inputs=[scores_spec()],
    outputs=[TensorSpec("probs", LOGIT_DTYPES, "C", "a probability per class")],
    reference=_sigmoid_reference,
    infer=same_as_input,
    tolerance={"float32": 1e-6, "float64": 1e-15},
    example_inputs=lambda rng, dtype: (random_scores(rng, dtype),),
)


@sigmoid.kernel("cpu")
@sigmoid.kernel("cpu", batched=True)
def _sigmoid_cpu(logits: Any, *, out: Any) -> None:
    as_rows(sigmoid_rows, logits, (out,))
