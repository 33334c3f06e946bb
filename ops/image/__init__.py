"""Image ops: decode, resize, crop, pad, letterbox, flip, rotate, colour, normalize, layout,
the fused classifier pre-processing, and train-only augmentations.

Images are HWC arrays (height × width × channels, a gray image has one channel). Every op takes
one image, a dense batch (``N H W C``) or a ragged list of images, as NumPy arrays or torch
tensors, and returns the same kind.
"""

from . import _cuda, _cuda_resample, _decode_gpu  # noqa: F401  (register the CUDA kernels; they compile on first use)
from ._augment import color_jitter, random_flip, random_resized_crop
from ._color import convert_color
from ._convert import layout, normalize, to_dtype
from ._crop import center_crop, crop
from ._decode import decode
from ._fused import resize_crop_normalize
from ._geometry import flip, rotate90
from ._letterbox import letterbox
from ._pad import pad
from ._resize import resize

__all__ = [
    "center_crop",
    "color_jitter",
    "convert_color",
    "crop",
    "decode",
    "flip",
    "layout",
    "letterbox",
    "normalize",
    "pad",
    "random_flip",
    "random_resized_crop",
    "resize",
    "resize_crop_normalize",
    "rotate90",
    "to_dtype",
]
