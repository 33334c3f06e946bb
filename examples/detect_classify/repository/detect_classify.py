"""The python step of the ``detect_classify`` pipeline: detector, crops, one classifier batch per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from twinpipe.dag import StepContext
from twinpipe.ops import image as ops

#: the side of the square crops the classifier takes (its config: pixels [16, 16, 3])
CROP = 16
#: the classifier's max_batch_size: an image with more objects sends its crops in several batches
MAX_BATCH = 64
LABELS = np.array((Path(__file__).parent / "classifier" / "labels.txt").read_text().split(), dtype=object)


def crops_of(picture: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Each box of ``picture`` (H W 3) cut out and resized to ``CROP x CROP``: [n, CROP, CROP, 3] uint8."""
    height, width = picture.shape[:2]
    out = np.empty((len(boxes), CROP, CROP, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.rint(boxes).astype(np.int64)):
        x1, y1 = min(max(x1, 0), width - 1), min(max(y1, 0), height - 1)  # at least one pixel, inside
        x2, y2 = min(max(x2, x1 + 1), width), min(max(y2, y1 + 1), height)
        out[k] = ops.resize(picture[y1:y2, x1:x2], size=CROP, interpolation="area")
    return out


def detect_and_classify(inputs: dict[str, Any], ctx: StepContext) -> dict[str, np.ndarray]:
    """``image``: a batch of encoded images → one row per object: its box, label, score, image index."""
    boxes, labels, scores, index = [], [], [], []
    for i, data in enumerate(np.asarray(inputs["image"], dtype=object).reshape(-1)):
        picture = ops.decode(bytes(data), color="rgb")
        found = ctx.infer("detector", {"image": picture})
        image_boxes = np.asarray(found["boxes"], np.float32).reshape(-1, 4)
        if not len(image_boxes):
            continue  # nothing to classify: no classifier call
        crops = crops_of(picture, image_boxes)
        probs = np.concatenate([np.asarray(ctx.infer("classifier", {"pixels": crops[s:s + MAX_BATCH]})["probs"])
                                for s in range(0, len(crops), MAX_BATCH)])
        best = probs.argmax(axis=1)
        boxes.append(image_boxes)
        labels.append(LABELS[best])
        scores.append(np.asarray(found["scores"], np.float32) * probs[np.arange(len(best)), best])
        index.append(np.full(len(best), i, np.int32))
    if not boxes:
        return {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, dtype=object),
                "scores": np.zeros(0, np.float32), "image_index": np.zeros(0, np.int32)}
    return {"boxes": np.concatenate(boxes), "labels": np.concatenate(labels),
            "scores": np.concatenate(scores).astype(np.float32), "image_index": np.concatenate(index)}
