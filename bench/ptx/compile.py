"""For ``bench/ptx_check.sh``: compile every recorded kernel launch (``record.py``) to PTX with
NVVM for a real GPU's compute capability — the CUDA compiler's typing and code generation, which
Numba's simulator skips — without a GPU. ``python bench/ptx/compile.py RECORD [--cc 9.0]``; exit 1
if any fails, naming the kernel, its argument types and the compiler's message.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba import cuda, types
from numba.cuda import dispatcher


class _Device:
    """No driver here: device functions a kernel calls compile for this compute capability."""

    compute_capability = (9, 0)
    id = 0


def _type(d: list[Any]) -> Any:
    kind = d[0]
    if kind == "array":
        return types.Array(numba.from_dtype(np.dtype(d[1])), d[2], d[3])
    if kind == "tuple":
        items = [_type(x) for x in d[1]]
        return types.UniTuple(items[0], len(items)) if all(i == items[0] for i in items) else types.Tuple(items)
    if kind == "bool":
        return types.boolean
    if kind == "scalar":
        return numba.from_dtype(np.dtype(d[1]))
    raise TypeError(f"cannot rebuild {d}")


def _kernel(module: str, qualname: str, args: list[Any]) -> Any:
    mod = importlib.import_module(module)
    if qualname.startswith("nms_kernels."):  # made per box dtype by a factory
        dtype = next((np.dtype(a[1]).name for a in args if a[0] == "array" and np.dtype(a[1]).kind == "f"), "float32")
        names = ("prepare", "rank", "gather", "mask", "scan", "select")
        return dict(zip(names, mod.nms_kernels(dtype)))[qualname.rsplit(".", 1)[1]]
    return getattr(mod, qualname)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record")
    ap.add_argument("--cc", default="9.0", help="compute capability to compile for")
    args = ap.parse_args()
    cc = tuple(int(v) for v in args.cc.split("."))
    _Device.compute_capability = cc  # type: ignore[assignment]
    if hasattr(dispatcher, "get_current_device"):
        dispatcher.get_current_device = lambda: _Device()  # type: ignore[attr-defined]
    lines = {ln for f in glob.glob(args.record + ".*") for ln in Path(f).read_text().splitlines() if ln}
    done: set[tuple[str, str, str]] = set()
    failed = 0
    for line in sorted(lines):
        module, qualname, arg_types = json.loads(line)
        if not module.startswith("twinpipe."):
            continue  # the tests' own deliberately broken kernels
        sig = types.void(*[_type(a) for a in arg_types])
        key = (module, qualname, str(sig))
        if key in done:
            continue
        done.add(key)
        try:
            cuda.compile_ptx(_kernel(module, qualname, arg_types).py_func, sig, cc=cc)
        except Exception as e:
            failed += 1
            message = "\n    ".join(ln for ln in str(e).splitlines() if ln.strip())[:1500]
            print(f"FAIL {module}.{qualname}{sig.args}\n    {message}")
    print(f"ptx_check: {len(done) - failed} kernel signatures compiled for sm_{cc[0]}{cc[1]} with {cuda.__file__}, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
