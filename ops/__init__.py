"""twinpipe ops: declared operations with a NumPy reference and per-device kernels.

``from twinpipe.ops import image`` then ``image.resize(img, size=256)``. Every op is also
registered by its dotted name (``get_op("image.resize")``) for YAML pipelines.
"""

from . import classify, detect, image, segment, tabular, text
from ._errors import DecodeError, InputError, OpError, ParamError
from ._op import BoundOp, Kernel, Mode, Op, Outputs
from ._params import REQUIRED, Bool, Choice, Float, FloatRange, Floats, Int, Optional, Param, ParamKind, Size
from ._registry import get_op, list_ops
from ._spec import BYTES, TensorSpec
from ._threads import get_num_threads, set_num_threads

__all__ = [
    "BYTES",
    "REQUIRED",
    "Bool",
    "BoundOp",
    "Choice",
    "DecodeError",
    "Float",
    "FloatRange",
    "Floats",
    "InputError",
    "Int",
    "Kernel",
    "Mode",
    "Op",
    "OpError",
    "Optional",
    "Outputs",
    "Param",
    "ParamError",
    "ParamKind",
    "Size",
    "TensorSpec",
    "classify",
    "detect",
    "get_num_threads",
    "get_op",
    "image",
    "list_ops",
    "segment",
    "tabular",
    "text",
    "set_num_threads",
]
