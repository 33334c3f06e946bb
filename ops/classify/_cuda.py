"""The CUDA side of the classification ops (device code in ``_cuda_kernels``, imported on the
first GPU call). Kernels get rows ``N × C`` (one sample is a row of its own) and launch on the
dispatch's stream; they compute in float64, as the references do, and store the input's dtype."""

from __future__ import annotations

from typing import Any

from .. import _device
from ._softmax import log_softmax, sigmoid, softmax
from ._topk import topk


def _rows(logits: Any, out: Any, log: bool) -> None:
    from ._cuda_kernels import THREADS, softmax_kernel

    softmax_kernel[logits.shape[0], THREADS, _device.stream()](logits, out, log)


@softmax.kernel("cuda")
def _softmax_cuda(logits: Any, *, out: Any) -> None:
    _rows(logits, out, False)


@log_softmax.kernel("cuda")
def _log_softmax_cuda(logits: Any, *, out: Any) -> None:
    _rows(logits, out, True)


@sigmoid.kernel("cuda")
def _sigmoid_cuda(logits: Any, *, out: Any) -> None:
    from ._cuda_kernels import sigmoid_kernel

    n, c = logits.shape
    sigmoid_kernel[((c + 127) // 128, n), (128, 1), _device.stream()](logits, out)


@topk.kernel("cuda")
def _topk_cuda(scores: Any, *, out: tuple[Any, Any], k: int) -> None:
    from ._cuda_kernels import topk_kernel

    n, c = scores.shape
    topk_kernel[((c + 127) // 128, n), (128, 1), _device.stream()](scores, out[0], out[1], k)
