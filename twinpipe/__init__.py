"""twinpipe: the same pre/post-processing code in a PyTorch training loop and in a model server.

The sub-packages are ``twinpipe.ops`` (ops and their kernels), ``twinpipe.dag`` (pipelines),
``twinpipe.models`` (model steps), ``twinpipe.runtime`` (executor, server, CLI) and
``twinpipe.pipelines`` (the shipped pipelines and assets).
"""

from twinpipe.ops import Op, OpError, get_op, image, list_ops

__version__ = "0.1.0"

__all__ = ["Op", "OpError", "__version__", "get_op", "image", "list_ops"]
