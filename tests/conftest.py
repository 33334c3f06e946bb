"""Suite-wide setup: without a GPU, CUDA kernels run in Numba's CUDA simulator.

``NUMBA_ENABLE_CUDASIM`` must be set before Numba's CUDA module is first imported, so it is set
here, when pytest starts. On a machine with an NVIDIA driver the real GPU is used (set
``NUMBA_ENABLE_CUDASIM=1`` yourself to force the simulator there).
"""

from __future__ import annotations

import os
from pathlib import Path

if not Path("/dev/nvidiactl").exists():
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
