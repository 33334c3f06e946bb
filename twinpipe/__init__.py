"""twinpipe: the same pre/post-processing code in a PyTorch training loop and in a model server.

The sub-packages are ``twinpipe.ops`` (ops and their kernels), ``twinpipe.dag`` (pipelines),
``twinpipe.models`` (model steps), ``twinpipe.runtime`` (executor, server, CLI) and
``twinpipe.pipelines`` (the shipped pipelines and assets).
"""

from twinpipe.dag import DEFAULT_SEARCH_PATHS, Pipeline, PipelineError, load_pipeline
from twinpipe.ops import Op, OpError, get_op, image, list_ops
from twinpipe.pipelines import pipelines_dir

# the shipped pipelines are found by name (`load_pipeline("imagenet_preprocess")`); dag itself
# knows nothing of the pipelines package
if pipelines_dir() not in DEFAULT_SEARCH_PATHS:
    DEFAULT_SEARCH_PATHS.append(pipelines_dir())

__version__ = "0.1.0"

__all__ = ["Op", "OpError", "Pipeline", "PipelineError", "__version__", "get_op", "image", "list_ops", "load_pipeline"]
