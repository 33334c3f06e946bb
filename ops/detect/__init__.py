"""Detection post-processing ops: box formats, head decoding, score threshold, NMS, letterbox mapping.

Boxes are ``[N, 4]`` float arrays, ``xyxy`` (corners) unless an op says otherwise, in pixels of
the image named. A typical YOLO serving chain::

    boxes, scores = detect.decode_yolo(prediction)                   # [N, 5 + C] → xyxy, [N, C]
    boxes = detect.unletterbox_boxes(boxes, scale, offset)            # image.letterbox's outputs
    boxes = detect.clip_boxes(boxes, image_size)                      # [height, width]
    out = detect.multiclass_nms(boxes, scores, max_detections=100)   # padded; out.num_detections

``detect.nms`` keeps exactly the boxes ``torchvision.ops.batched_nms`` keeps, in the same order.
Variable-length results (``nms``, ``score_threshold``) come as lists in a batch;
``multiclass_nms`` pads to ``max_detections`` rows with ``num_detections``, for fixed-shape server outputs.
"""

from . import _cuda  # noqa: F401  (registers the CUDA kernels; they compile on first use)
from ._boxes import (
    clip_boxes,
    convert_boxes,
    letterbox_boxes,
    normalized_to_pixels,
    pixels_to_normalized,
    unletterbox_boxes,
)
from ._decode import decode_anchors, decode_yolo
from ._grid import decode_grid
from ._nms import nms, nms_indices
from ._select import multiclass_nms, score_threshold

__all__ = [
    "clip_boxes",
    "convert_boxes",
    "decode_anchors",
    "decode_grid",
    "decode_yolo",
    "letterbox_boxes",
    "multiclass_nms",
    "nms",
    "nms_indices",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "score_threshold",
    "unletterbox_boxes",
]
