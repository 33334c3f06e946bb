"""Model instances: ``count`` copies of a model serving concurrently, each on its own thread.

Each instance is its own loaded copy (module, weights and, on a GPU, CUDA stream), so instances
share nothing while they run; torch releases the GIL inside its kernels, so they overlap.

    pool = InstancePool("tiny", [model.runner, model.new_instance()])
    out = await pool.run({"pixels": x})               # on whichever instance is free
    out = await pool.run({"pixels": x}, instance=1)   # on instance 1 (sequence routing)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["InstancePool", "Runner"]

Runner = Callable[..., Mapping[str, Any]]


class InstancePool:
    """Runs requests on the first free instance (or a named one); at most one request per
    instance at a time."""

    def __init__(self, name: str, runners: Sequence[Runner]) -> None:
        if not runners:
            raise ValueError(f"model {name!r}: an instance pool needs at least one instance")
        self.name = name
        self.runners = tuple(runners)
        self._executor = ThreadPoolExecutor(len(self.runners), thread_name_prefix=f"twinpipe-{name}")
        self._busy = [False] * len(self.runners)
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.runners)

    async def run(self, inputs: Mapping[str, Any], *, instance: int | None = None) -> dict[str, Any]:
        """Run one (batched) request; waits for a free instance."""
        if instance is not None and not 0 <= instance < len(self.runners):
            raise ValueError(f"model {self.name!r} has {len(self.runners)} instance(s); there is no instance {instance}")
        loop = asyncio.get_running_loop()
        while (index := self._pick(instance)) is None:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self._busy[index] = True
        work = loop.run_in_executor(self._executor, functools.partial(self.runners[index], **inputs))
        # freed when the thread is done, even if the caller stops waiting first
        work.add_done_callback(lambda _: self._release(index))
        return dict(await asyncio.shield(work))

    def _pick(self, instance: int | None) -> int | None:
        if instance is not None:
            return None if self._busy[instance] else instance
        return self._busy.index(False) if not all(self._busy) else None

    def _release(self, index: int) -> None:
        self._busy[index] = False
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Stop the instance threads once their current work is done."""
        self._executor.shutdown(wait=False)
