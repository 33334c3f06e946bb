"""The instance pool: worker threads per instance, pinned requests, and the inline fast path for
tiny compiled models (on only when the calls are cheap, off again when a call waits)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from twinpipe.models._instances import INLINE_BELOW_S, InstancePool


def _double(x: np.ndarray) -> dict[str, Any]:
    return {"y": x * 2}


def _sleeper(x: np.ndarray) -> dict[str, Any]:
    time.sleep(0.003)  # waits without computing: CPU time ~0, wall 3 ms
    return {"y": x}


def _busy(x: np.ndarray) -> dict[str, Any]:
    end = time.thread_time() + 10 * INLINE_BELOW_S
    while time.thread_time() < end:  # computes: CPU time well over the bound
        pass
    return {"y": x}


def _calls(pool: InstancePool, n: int) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        return [await pool.run({"x": np.full(3, k)}) for k in range(n)]

    return asyncio.run(main())


def test_a_tiny_model_runs_on_the_loop_once_its_calls_prove_cheap() -> None:
    pool = InstancePool("tiny", [_double], inline=True)
    out = _calls(pool, 60)
    assert [int(o["y"][0]) for o in out] == [2 * k for k in range(60)]
    assert 0 < pool.inline_calls <= 60 - 16  # the first window ran on the worker
    plain = InstancePool("py", [_double], inline=False)
    _calls(plain, 60)
    assert plain.inline_calls == 0  # python factories never take the fast path
    pool.close()
    plain.close()


def test_a_model_that_waits_goes_back_to_its_thread() -> None:
    pool = InstancePool("sleepy", [_sleeper], inline=True)
    _calls(pool, 60)
    assert pool.inline_calls == 1  # tried once, held the loop 3 ms while idle, and backed off
    pool.close()


def test_a_model_that_computes_stays_on_its_thread() -> None:
    pool = InstancePool("busy", [_busy], inline=True)
    _calls(pool, 30)
    assert pool.inline_calls == 0
    pool.close()


def test_pinned_requests_run_on_their_instance_and_others_on_any() -> None:
    seen: list[tuple[int, str]] = []

    def runner(i: int) -> Any:
        def run(x: np.ndarray) -> dict[str, Any]:
            seen.append((i, threading.current_thread().name))
            time.sleep(0.002)
            return {"y": x + i}
        return run

    pool = InstancePool("pin", [runner(0), runner(1), runner(2)])

    async def main() -> list[dict[str, Any]]:
        jobs = [pool.run({"x": np.zeros(1)}, instance=k % 3) for k in range(12)] + [pool.run({"x": np.zeros(1)}) for _ in range(6)]
        return list(await asyncio.gather(*jobs))

    out = asyncio.run(main())
    assert [int(o["y"][0]) for o in out[:12]] == [k % 3 for k in range(12)]
    assert {i for i, _ in seen} == {0, 1, 2}
    for i, thread in seen:  # each instance always on its own worker thread
        assert thread == f"twinpipe-pin-{i}"
    with pytest.raises(ValueError, match=r"has 3 instance\(s\); there is no instance 5"):
        asyncio.run(pool.run({"x": np.zeros(1)}, instance=5))
    pool.close()
    with pytest.raises(RuntimeError, match=r"the instance pool is closed"):
        asyncio.run(pool.run({"x": np.zeros(1)}))


def test_an_error_reaches_its_caller_and_the_worker_lives_on() -> None:
    def flaky(x: np.ndarray) -> dict[str, Any]:
        if x[0] < 0:
            raise ValueError("negative")
        return {"y": x}

    pool = InstancePool("flaky", [flaky])

    async def main() -> None:
        with pytest.raises(ValueError, match="negative"):
            await pool.run({"x": -np.ones(1)})
        assert (await pool.run({"x": np.ones(1)}))["y"][0] == 1

    asyncio.run(main())
    pool.close()
