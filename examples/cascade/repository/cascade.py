"""The cascade's decision: small model first, the big one for the rows the small one is unsure of.

The threshold is 0.9 unless the request says otherwise (request parameter ``threshold``).
"""

from typing import Any

import numpy as np

LABELS = np.array([b"up", b"lower-left", b"lower-right", b"centre"], dtype=object)
THRESHOLD = 0.9


def cascade(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    features = np.asarray(inputs["features"], dtype=np.float32)
    threshold = float(ctx.parameters.get("threshold", THRESHOLD))
    probs = np.array(ctx.infer("small", {"features": features})["probs"])
    unsure = probs.max(axis=1) < threshold
    answered_by = np.where(unsure, b"big", b"small").astype(object)
    if unsure.any():
        probs[unsure] = ctx.infer("big", {"features": features[unsure]})["probs"]
        ctx.logger.debug("%d of %d rows went to the big model", int(unsure.sum()), len(features))
    return {"label": LABELS[probs.argmax(axis=1)], "score": probs.max(axis=1).astype(np.float32), "answered_by": answered_by}
