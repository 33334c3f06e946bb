"""How many threads a CPU kernel may use, and running a kernel over row bands in parallel.

Kernels release the GIL (Numba ``nogil``), so bands of rows run truly in parallel on a shared
thread pool. The default is one thread: DataLoader workers and a serving executor already run
many samples at once, and nested parallelism only oversubscribes the cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["get_num_threads", "parallel_rows", "set_num_threads"]

_state: dict[str, Any] = {"threads": 1, "pool": None, "pid": None}
_lock = threading.Lock()


def set_num_threads(n: int) -> None:
    """Let CPU kernels split one image over ``n`` threads (1 = no splitting)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, got {n!r}")
    _state["threads"] = n


def get_num_threads() -> int:
    return int(_state["threads"])


def _pool(n: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _state["pool"]
        # a forked child (DataLoader worker) must not use the parent's pool threads
        if pool is None or pool._max_workers < n or _state["pid"] != os.getpid():
            pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="twinpipe-kernel")
            _state.update(pool=pool, pid=os.getpid())
        return pool


def parallel_rows(fn: Callable[..., None], rows: int, *args: Any, min_rows: int = 16) -> None:
    """Call ``fn(*args, start, stop)`` over bands covering ``range(rows)``, in parallel if allowed."""
    n = min(get_num_threads(), max(1, rows // min_rows))
    if n <= 1:
        fn(*args, 0, rows)
        return
    bounds = [rows * i // n for i in range(n + 1)]
    futures = [_pool(n).submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, n)]
    fn(*args, bounds[0], bounds[1])
    for f in futures:
        f.result()
