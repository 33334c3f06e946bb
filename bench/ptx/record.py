"""A pytest plugin for ``bench/ptx_check.sh``: under Numba's CUDA simulator, record the argument
types of every kernel launch (module, kernel, types), one JSON line each, into ``$PTX_RECORD.<pid>``.

Load it with ``-p record`` and ``bench/ptx`` on ``PYTHONPATH``; it patches the simulator's kernel
call, so the tests run as they always do.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numba.cuda.simulator import kernel as simulated
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

_SEEN: set[str] = set()


def describe(arg: Any) -> list[Any]:
    """An argument's type as ``compile.py`` rebuilds it."""
    if isinstance(arg, FakeCUDAArray):
        arg = arg._ary
    if isinstance(arg, np.ndarray):
        return ["array", arg.dtype.str, arg.ndim, "C" if arg.flags.c_contiguous else "A"]
    if isinstance(arg, tuple):
        return ["tuple", [describe(a) for a in arg]]
    if isinstance(arg, (bool, np.bool_)):
        return ["bool"]
    if isinstance(arg, (np.integer, np.floating)):
        return ["scalar", np.dtype(type(arg)).str]
    if isinstance(arg, int):
        return ["scalar", "<i8"]
    if isinstance(arg, float):
        return ["scalar", "<f8"]
    return ["other", type(arg).__name__]


_call = simulated.FakeCUDAKernel.__call__


def _recording_call(self: Any, *args: Any) -> Any:
    if not self._device:
        _SEEN.add(json.dumps([self.fn.__module__, self.fn.__qualname__, [describe(a) for a in args]]))
    return _call(self, *args)


simulated.FakeCUDAKernel.__call__ = _recording_call
atexit.register(lambda: Path(f"{os.environ['PTX_RECORD']}.{os.getpid()}").write_text("\n".join(sorted(_SEEN))))
