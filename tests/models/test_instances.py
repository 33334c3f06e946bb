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


def test_a_stream_yields_each_response_as_the_model_makes_it() -> None:
    made: list[float] = []

    def counter(n: np.ndarray) -> Any:
        for k in range(int(n[0])):
            time.sleep(0.01)
            made.append(time.monotonic())
            yield {"k": np.array([k + 1])}

    pool = InstancePool("count", [counter])

    async def main() -> list[tuple[int, float]]:
        return [(int(out["k"][0]), time.monotonic()) async for out in pool.stream({"n": np.array([5])})]

    got = asyncio.run(main())
    assert [k for k, _ in got] == [1, 2, 3, 4, 5]
    # each arrived before the model had made the next one: streamed, not collected
    assert all(at < made[i + 1] for i, (_, at) in enumerate(got[:-1]))
    pool.close()


def test_an_error_mid_stream_comes_after_the_responses_before_it() -> None:
    def failing(n: np.ndarray) -> Any:
        yield {"k": np.array([1])}
        raise ValueError("the second response failed")

    pool = InstancePool("fail", [failing])

    async def main() -> tuple[list[int], Exception | None]:
        seen = []
        try:
            async for out in pool.stream({"n": np.array([2])}):
                seen.append(int(out["k"][0]))
        except ValueError as e:
            return seen, e
        return seen, None

    seen, error = asyncio.run(main())
    assert seen == [1] and str(error) == "the second response failed"
    pool.close()


def test_leaving_a_stream_closes_the_models_generator_and_frees_the_instance() -> None:
    closed: list[int] = []  # the streams whose generator was closed, by id

    def endless(n: np.ndarray) -> Any:
        k = 0
        try:
            while True:
                k += 1
                time.sleep(0.002)
                yield {"k": np.array([k])}
        finally:
            closed.append(int(n[0]))

    pool = InstancePool("ticker", [endless])  # one instance: a stream left running would block the next

    async def drain(stream_id: int) -> None:
        async for _ in pool.stream({"n": np.array([stream_id])}):
            pass

    async def main() -> list[int]:
        first = []
        async for out in pool.stream({"n": np.array([1])}):
            first.append(int(out["k"][0]))
            if len(first) == 3:
                break  # leaving the loop
        task = asyncio.ensure_future(drain(2))
        await asyncio.sleep(0.05)  # it runs, so stream 1 was let go of
        task.cancel()  # a consumer cancelled while it waits
        with pytest.raises(asyncio.CancelledError):
            await task
        return first

    assert asyncio.run(main()) == [1, 2, 3]
    deadline = time.monotonic() + 5
    while len(closed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == [1, 2]  # each model generator's finally ran: closed, not left running
    pool.close()
