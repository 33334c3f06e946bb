"""What every runner does first: the model's inputs in call order, batched.

With ``max_batch_size > 0`` a model takes a batch; a single sample (the declared rank) is given a
batch of one, and the runner unbatches the outputs again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._config import ModelConfig

__all__ = ["gather_inputs"]


def gather_inputs(config: ModelConfig, inputs: Mapping[str, Any]) -> tuple[list[Any], bool]:
    """``config.model_inputs`` (declared, then state) from ``inputs``, and whether a single sample
    was given a batch of one. Raises on a missing input or a batch above ``max_batch_size``."""
    batched = config.max_batch_size > 0
    unbatch = False
    out = []
    for decl in config.model_inputs:
        x = inputs.get(decl.name, _MISSING)
        if x is _MISSING:
            missing = [d.name for d in config.model_inputs if d.name not in inputs]
            raise TypeError(f"model {config.name!r}: missing input(s) {', '.join(missing)}")
        if batched:
            if (x.ndim if type(x) is np.ndarray else np.ndim(x)) == len(decl.shape):
                x, unbatch = np.asarray(x)[None], True
            elif len(x) > config.max_batch_size:
                raise ValueError(f"model {config.name!r}: batch of {len(x)} exceeds max_batch_size {config.max_batch_size}")
        out.append(x)
    return out, unbatch


_MISSING = object()
