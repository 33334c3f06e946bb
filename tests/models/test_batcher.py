"""The dynamic batcher: batched results equal unbatched ones on random request mixes; batches
form by size or by delay; queue full, timeouts, priorities, ordering and failures."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.models import load_repository
from twinpipe.models._batcher import (
    BatchError,
    BatchingPolicy,
    DynamicBatcher,
    QueueFullError,
    QueueTimeoutError,
    RequestError,
)
from twinpipe.models._instances import InstancePool

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

CONFIG = """\
name: cnn
backend: torchscript
max_batch_size: 16
inputs:
  pixels: {datatype: FP32, shape: [3, -1, -1]}
outputs:
  logits: {datatype: FP32, shape: [5]}
  energy: {datatype: FP64, shape: [1]}
device: cpu
instances: {count: 2}
"""


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                        torch.nn.Flatten(), torch.nn.Linear(24, 5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.body(x), (x.double() ** 2).mean(dim=(1, 2, 3)).unsqueeze(1)


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Any:
    repo = tmp_path_factory.mktemp("repo")
    (repo / "cnn" / "1").mkdir(parents=True)
    (repo / "cnn" / "config.yaml").write_text(CONFIG)
    torch.jit.save(torch.jit.script(_Net().eval()), str(repo / "cnn" / "1" / "model.pt"))
    return load_repository(repo).get("cnn")


class _Recorder:
    """An async run function that records every batch it is given."""

    def __init__(self, pool: InstancePool | None = None, gate: asyncio.Event | None = None) -> None:
        self.pool, self.gate = pool, gate
        self.batches: list[dict[str, Any]] = []
        self.started: list[float] = []

    async def __call__(self, inputs: dict[str, Any]) -> Mapping[str, Any]:
        self.batches.append(inputs)
        self.started.append(asyncio.get_running_loop().time())
        if self.gate is not None:
            await self.gate.wait()
        if self.pool is not None:
            return await self.pool.run(inputs)
        x = inputs["x"]
        if np.any(x == -1):
            raise ValueError("a row holds the poison value -1")
        return {"y": x * 2 + 1, "rowsum": x.reshape(len(x), -1).sum(1)}


def _x(rng: np.random.Generator, rows: int, width: int = 3) -> np.ndarray:
    return rng.integers(0, 100, (rows, width)).astype(np.int64)


def test_random_request_mixes_give_the_unbatched_results(cnn: Any) -> None:
    rng = np.random.default_rng(_seed())
    pool = InstancePool("cnn", [cnn.runner, cnn.new_instance()])
    requests = [rng.standard_normal((int(rng.integers(1, 5)), 3, *[(7, 9), (8, 8), (5, 11)][int(rng.integers(3))])).astype(np.float32)
                for _ in range(60)]
    alone = [cnn.runner(pixels=x) for x in requests]

    async def main() -> tuple[list[dict[str, Any]], _Recorder]:
        rec = _Recorder(pool)
        batcher = DynamicBatcher("cnn", rec, BatchingPolicy(16, max_queue_delay_us=2000, preferred_batch_sizes=(8, 16)), concurrency=2)

        async def one(i: int) -> dict[str, Any]:
            await asyncio.sleep(float(rng.uniform(0, 0.01)))
            return await batcher.infer({"pixels": requests[i]})

        got = await asyncio.gather(*(one(i) for i in range(len(requests))))
        await batcher.close()
        return list(got), rec

    got, rec = asyncio.run(main())
    for want, out, x in zip(alone, got, requests):
        assert set(out) == {"logits", "energy"}
        assert out["logits"].shape == (len(x), 5) and out["energy"].dtype == np.float64
        np.testing.assert_allclose(out["logits"], want["logits"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["energy"], want["energy"], rtol=1e-12)
    assert len(rec.batches) < len(requests)  # requests were stacked
    assert max(len(b["pixels"]) for b in rec.batches) > 4
    for b in rec.batches:  # never more than max_batch_size rows, never mixed sizes (torch.cat would fail)
        assert len(b["pixels"]) <= 16


def test_a_batch_waits_for_the_delay_then_runs_what_it_has() -> None:
    delay_us = 40_000

    async def main() -> tuple[_Recorder, list[float], list[dict[str, Any]]]:
        rec = _Recorder()
        batcher = DynamicBatcher("m", rec, BatchingPolicy(8, max_queue_delay_us=delay_us, preferred_batch_sizes=(8,)))
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []

        async def one(v: int) -> dict[str, Any]:
            arrivals.append(loop.time())
            return await batcher.infer({"x": np.full((1, 3), v)})

        out = await asyncio.gather(one(3), one(5), one(7))
        await batcher.close()
        return rec, arrivals, list(out)

    rec, arrivals, out = asyncio.run(main())
    assert len(rec.batches) == 1 and rec.batches[0]["x"][:, 0].tolist() == [3, 5, 7]
    # the preferred size was not reached: the batch ran only once the oldest had waited the delay
    assert rec.started[0] - min(arrivals) >= delay_us / 1e6 * 0.999
    assert [o["y"][0, 0] for o in out] == [7, 11, 15]


def test_a_full_preferred_batch_does_not_wait() -> None:
    async def main() -> _Recorder:
        rec = _Recorder()
        batcher = DynamicBatcher("m", rec, BatchingPolicy(8, max_queue_delay_us=600_000_000, preferred_batch_sizes=(2, 4)))
        await asyncio.wait_for(asyncio.gather(*(batcher.infer({"x": np.full((1, 2), v)}) for v in range(8))), 60)
        await batcher.close()
        return rec

    rec = asyncio.run(main())  # a ten-minute delay: only reaching the preferred size lets them run
    assert [len(b["x"]) for b in rec.batches] == [4, 4]


def test_requests_split_at_max_batch_size_and_split_back_exactly() -> None:
    rng = np.random.default_rng(_seed())
    xs = [_x(rng, int(rng.integers(1, 6)), 4) for _ in range(25)]

    async def main() -> tuple[_Recorder, list[dict[str, Any]]]:
        rec = _Recorder(gate=asyncio.Event())
        batcher = DynamicBatcher("m", rec, BatchingPolicy(7, max_queue_delay_us=0))
        tasks = [asyncio.ensure_future(batcher.infer({"x": x})) for x in xs]
        await asyncio.sleep(0.01)
        assert rec.gate is not None
        rec.gate.set()
        out = await asyncio.gather(*tasks)
        await batcher.close()
        return rec, list(out)

    rec, out = asyncio.run(main())
    for x, o in zip(xs, out):
        np.testing.assert_array_equal(o["y"], x * 2 + 1)
        np.testing.assert_array_equal(o["rowsum"], x.sum(1))
    assert all(len(b["x"]) <= 7 for b in rec.batches)
    assert sum(len(b["x"]) for b in rec.batches) == sum(len(x) for x in xs)
    assert any(len(b["x"]) > 5 for b in rec.batches)


def test_different_non_batch_shapes_and_dtypes_are_never_stacked() -> None:
    rng = np.random.default_rng(_seed())
    xs = [_x(rng, 2, int(rng.integers(2, 5))).astype([np.int64, np.int32][int(rng.integers(2))]) for _ in range(30)]

    async def main() -> tuple[_Recorder, list[dict[str, Any]]]:
        rec = _Recorder(gate=asyncio.Event())
        batcher = DynamicBatcher("m", rec, BatchingPolicy(64))
        tasks = [asyncio.ensure_future(batcher.infer({"x": x})) for x in xs]
        await asyncio.sleep(0.01)
        assert rec.gate is not None
        rec.gate.set()
        out = await asyncio.gather(*tasks)
        await batcher.close()
        return rec, list(out)

    rec, out = asyncio.run(main())
    kinds = {(x.shape[1], x.dtype.str) for x in xs}
    assert len(rec.batches) >= len(kinds)
    for b in rec.batches[1:]:  # after the first (run alone while the gate was shut): one batch per kind
        assert b["x"].dtype in (np.int64, np.int32)
    assert len(rec.batches) <= len(kinds) + 1
    for x, o in zip(xs, out):
        np.testing.assert_array_equal(o["y"], x * 2 + 1)
        assert o["y"].dtype == x.dtype


def test_a_full_queue_rejects_at_once_and_keeps_serving() -> None:
    async def main() -> None:
        rec = _Recorder(gate=asyncio.Event())
        batcher = DynamicBatcher("busy", rec, BatchingPolicy(1, max_queue_size=3))
        first = asyncio.ensure_future(batcher.infer({"x": np.ones((1, 2))}))
        await asyncio.sleep(0.01)  # the first runs (held at the gate); three more fill the queue
        queued = [asyncio.ensure_future(batcher.infer({"x": np.full((1, 2), v)})) for v in (2, 3, 4)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match=r"busy: queue full \(3 requests waiting, max_queue_size\)"):
            await batcher.infer({"x": np.ones((1, 2))})
        assert batcher.stats.rejected == 1
        assert rec.gate is not None
        rec.gate.set()
        done = await asyncio.gather(first, *queued)
        assert [d["y"][0, 0] for d in done] == [3, 5, 7, 9]
        again = await batcher.infer({"x": np.full((1, 2), 10)})  # serving goes on
        assert again["y"][0, 0] == 21
        await batcher.close()

    asyncio.run(main())


def test_a_request_that_waits_too_long_is_rejected_not_run() -> None:
    async def main() -> None:
        rec = _Recorder(gate=asyncio.Event())
        batcher = DynamicBatcher("slow", rec, BatchingPolicy(1, timeout_us=5_000_000))
        first = asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), 1)}))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueTimeoutError, match=r"slow: the request waited \d+ µs in the queue \(timeout 20000 µs\) and was not run"):
            await batcher.infer({"x": np.full((1, 1), 2)}, timeout_us=20_000)
        late = asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), 3)}))  # the default 5 s: still fine
        assert rec.gate is not None
        rec.gate.set()
        assert (await first)["y"][0, 0] == 3 and (await late)["y"][0, 0] == 7
        assert [int(b["x"][0, 0]) for b in rec.batches] == [1, 3]  # the timed-out request never ran
        assert batcher.stats.timed_out == 1
        await batcher.close()

    asyncio.run(main())


def test_higher_priority_requests_go_first() -> None:
    async def main() -> list[int]:
        rec = _Recorder(gate=asyncio.Event())
        batcher = DynamicBatcher("p", rec, BatchingPolicy(1, priority_levels=3))
        tasks = [asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), 0)}))]
        await asyncio.sleep(0.01)
        for v, prio in [(1, 3), (2, None), (3, 2), (4, 1), (5, 1), (6, 2)]:
            tasks.append(asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), v)}, priority=prio)))
        await asyncio.sleep(0)
        with pytest.raises(RequestError, match=r"priority 4 is outside 1..3"):
            await batcher.infer({"x": np.ones((1, 1))}, priority=4)
        assert rec.gate is not None
        rec.gate.set()
        await asyncio.gather(*tasks)
        await batcher.close()
        return [int(b["x"][0, 0]) for b in rec.batches]

    # 1 is the highest; no priority means the lowest level; within a level, the oldest first
    assert asyncio.run(main()) == [0, 4, 5, 3, 6, 1, 2]


def test_preserve_ordering_returns_answers_in_request_order() -> None:
    async def run(inputs: dict[str, Any]) -> Mapping[str, Any]:
        await asyncio.sleep(0.2 if inputs["x"][0, 0] == 0 else 0.0)  # the first request is slow
        return {"y": inputs["x"]}

    async def main(ordered: bool) -> list[int]:
        batcher = DynamicBatcher("o", run, BatchingPolicy(1, preserve_ordering=ordered), concurrency=4)
        finished: list[int] = []

        async def one(v: int) -> None:
            await batcher.infer({"x": np.full((1, 1), v)})
            finished.append(v)

        await asyncio.gather(*(one(v) for v in range(4)))
        await batcher.close()
        return finished

    assert asyncio.run(main(True)) == [0, 1, 2, 3]
    assert asyncio.run(main(False))[-1] == 0  # without it, the slow first answer comes last


def test_a_failing_batch_fails_only_its_own_requests() -> None:
    async def main() -> None:
        batcher = DynamicBatcher("f", _Recorder(), BatchingPolicy(4))
        good = [batcher.infer({"x": np.full((1, 3), v)}) for v in range(3)]
        bad = batcher.infer({"x": np.full((1, 5), -1)})  # another shape: its own batch
        results = await asyncio.gather(*good, bad, return_exceptions=True)
        for v, r in enumerate(results[:3]):
            assert isinstance(r, dict) and r["y"][0, 0] == 2 * v + 1
        error = results[3]
        assert isinstance(error, BatchError)
        assert "f: the batch of 1 rows (1 requests) failed: ValueError: a row holds the poison value -1" in str(error)
        assert isinstance(error.__cause__, ValueError)
        assert (await batcher.infer({"x": np.full((1, 3), 9)}))["y"][0, 0] == 19  # and it keeps serving
        assert batcher.stats.failed == 1
        await batcher.close()

    asyncio.run(main())


def test_wrong_output_rows_fail_the_batch_clearly() -> None:
    async def run(inputs: dict[str, Any]) -> Mapping[str, Any]:
        return {"y": inputs["x"][:1]}

    async def main() -> None:
        batcher = DynamicBatcher("w", run, BatchingPolicy(4))
        with pytest.raises(BatchError, match=r"outputs \{'y': \(1,\)\} do not have the batch's 3 rows"):
            await batcher.infer({"x": np.ones((3, 2))})
        await batcher.close()

    asyncio.run(main())


def test_requests_that_cannot_be_batched_are_refused() -> None:
    async def main() -> None:
        batcher = DynamicBatcher("r", _Recorder(), BatchingPolicy(4))
        with pytest.raises(RequestError, match=r"r: a request of 5 rows does not fit max_batch_size 4"):
            await batcher.infer({"x": np.ones((5, 2))})
        with pytest.raises(RequestError, match=r"inputs disagree on the batch size \(first dimension\): \{'x': 2, 'z': 3\}"):
            await batcher.infer({"x": np.ones((2, 2)), "z": np.ones((3, 2))})
        await batcher.close()

    asyncio.run(main())
    with pytest.raises(ValueError, match=r"preferred_batch_sizes \[16\] exceed max_batch_size 8"):
        BatchingPolicy(8, preferred_batch_sizes=(16,))


def test_a_cancelled_request_leaves_the_queue_without_running() -> None:
    async def main() -> list[int]:
        rec = _Recorder(gate=asyncio.Event())
        batcher = DynamicBatcher("c", rec, BatchingPolicy(1))
        first = asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), 1)}))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), 2)}))
        kept = asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), 3)}))
        await asyncio.sleep(0)
        gone.cancel()
        assert rec.gate is not None
        rec.gate.set()
        await asyncio.gather(first, kept)
        await batcher.close()
        return [int(b["x"][0, 0]) for b in rec.batches]

    assert asyncio.run(main()) == [1, 3]


def test_policy_from_a_config_section() -> None:
    p = BatchingPolicy.from_section({"max_queue_delay_us": 100, "preferred_batch_sizes": [8, 4, 8], "priority_levels": 2}, 8)
    assert (p.max_batch_size, p.max_queue_delay_us, p.preferred_batch_sizes, p.priority) == (8, 100, (4, 8), 2)
    assert BatchingPolicy.from_section({"max_batch_size": 4}, 0).max_batch_size == 4  # a pipeline's own


def test_an_observer_sees_every_batch() -> None:
    seen: list[tuple[int, float, float]] = []

    async def main() -> None:
        rec = _Recorder(gate=asyncio.Event())
        batcher = DynamicBatcher("obs", rec, BatchingPolicy(4), observer=lambda *a: seen.append(a))
        tasks = [asyncio.ensure_future(batcher.infer({"x": np.full((n, 2), n)})) for n in (1, 2, 1, 3)]
        await asyncio.sleep(0.01)
        assert rec.gate is not None
        rec.gate.set()
        await asyncio.gather(*tasks)
        await batcher.close()

    asyncio.run(main())
    assert [rows for rows, _, _ in seen] == [4, 3]  # 1 + 2 + 1 fill the batch of 4; the 3 does not fit
    assert all(wait >= 0 and seconds >= 0 for _, wait, seconds in seen)
    assert seen[0][2] >= 0.009  # the first batch was held at the gate for the 10 ms sleep
