"""Classification post-processing: softmax, log-softmax, sigmoid, top-k, multi-label threshold,
and class names from a label file.

Scores are ``[C]`` per sample (a dense batch ``[N, C]``, or a ragged list), float32 or float64,
NumPy arrays or torch tensors. Ties in ``topk`` go to the lowest class index.

    from twinpipe.ops import classify

    probs = classify.softmax(logits)                  # [N, 1000] float32
    top = classify.topk(probs, k=5)                   # top.values, top.indices [N, 5]
    names = classify.labels(top.indices, labels="twinpipe.pipelines:assets/imagenet_labels.txt")
"""

from . import _cuda  # noqa: F401  (registers the CUDA kernels; they compile on first use)
from ._labels import LabelFile, Labels, labels, read_labels
from ._softmax import log_softmax, sigmoid, softmax
from ._topk import threshold, topk

__all__ = ["LabelFile", "Labels", "labels", "log_softmax", "read_labels", "sigmoid", "softmax", "threshold", "topk"]
