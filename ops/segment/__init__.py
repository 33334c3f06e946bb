"""Segmentation post-processing: per-pixel argmax, resizing the label map back to the image,
colouring it with a palette, and counting pixels per class.

Logits are ``C H W`` per sample (``N C H W`` for a batch; ``H W C`` with ``layout="HWC"``);
label maps are ``H W`` of uint8, int32 or int64.

    from twinpipe.ops import segment

    labels = segment.argmax(logits, dtype="uint8")            # [h, w]
    labels = segment.resize(labels, np.array([480, 640]))      # back to the photo's size
    rgb = segment.colorize(labels)                             # [480, 640, 3] uint8, VOC colours
    per_class = segment.counts(labels, num_classes=21)
"""

from ._argmax import argmax
from ._colorize import Palette, colorize, counts, voc_palette
from ._resize import resize

__all__ = ["Palette", "argmax", "colorize", "counts", "resize", "voc_palette"]
