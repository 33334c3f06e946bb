"""The sequence batcher: interleaved sequences equal each run alone, state lifetimes, routing, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import textwrap
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.models import LoadedModel, Repository, load_repository
from twinpipe.models._batcher import BatchError, QueueTimeoutError, RequestError
from twinpipe.models._instances import InstancePool
from twinpipe.models._sequence import SequenceBatcher, SequenceError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

INITIAL = 0.25
MARK = -1000.0  # the python model raises on an input holding this

ACC_MODULE = f'''
import os
import torch

class Acc:
    """h_out = h + x (x: [n, 3] or [n, 1]), y = 2 h_out; who: this instance's token; raises on a marked input."""

    def __init__(self):
        self.token = int.from_bytes(os.urandom(6), "little") + 1

    def __call__(self, x, h):
        if bool((x == {MARK}).any()):
            raise ValueError("marked input")
        h_out = h + x
        who = torch.full((x.shape[0], 1), self.token, dtype=torch.int64)
        return {{"y": h_out * 2, "who": who, "h_out": h_out}}

def build():
    return Acc()
'''


class Cell(torch.nn.Module):
    """h_out = tanh(x W + h U), y = h_out V: batched ([n, 4]) or not ([4])."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(4, 8, generator=g) * 0.5)
        self.u = torch.nn.Parameter(torch.randn(8, 8, generator=g) * 0.5)
        self.v = torch.nn.Parameter(torch.randn(8, 3, generator=g))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_out = torch.tanh(x @ self.w + h @ self.u)
        return h_out @ self.v, h_out


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _write(root: Path, name: str, body: str) -> Path:
    (root / name / "1").mkdir(parents=True)
    (root / name / "config.yaml").write_text(f"name: {name}\ndevice: cpu\n" + textwrap.dedent(body))
    return root / name / "1"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    root = tmp_path_factory.mktemp("repo")
    state = f"state: {{h: {{input: h_in, output: h_out, datatype: FP32, shape: [8], initial: {INITIAL}}}}}"
    for name, mbs in (("cell", 4), ("cell0", 0)):
        folder = _write(root, name, f"""\
            backend: torchscript
            max_batch_size: {mbs}
            inputs: {{x: {{datatype: FP32, shape: [4]}}}}
            outputs: {{y: {{datatype: FP32, shape: [3]}}}}
            sequence_batching:
              strategy: oldest
              {state}
            """)
        torch.jit.save(torch.jit.script(Cell(_seed())), str(folder / "model.pt"))
    folder = _write(root, "acc", f"""\
        backend: python
        factory: acc_model:build
        max_batch_size: 2
        inputs: {{x: {{datatype: FP32, shape: [-1]}}}}
        outputs: {{y: {{datatype: FP32, shape: [3]}}, who: {{datatype: INT64, shape: [1]}}}}
        sequence_batching:
          strategy: direct
          max_sequence_idle_us: 60000000
          state: {{h: {{input: h_in, output: h_out, datatype: FP32, shape: [3], initial: {INITIAL}}}}}
        """)
    (folder / "acc_model.py").write_text(ACC_MODULE)
    loaded = load_repository(root)
    assert loaded.errors == {}
    return loaded


def _batcher(model: LoadedModel, instances: int = 1, **section: Any) -> tuple[SequenceBatcher, InstancePool]:
    """A batcher over ``instances`` copies, its config's sequence_batching updated by ``section``."""
    assert model.config.sequence_batching is not None
    config = dataclasses.replace(model.config, sequence_batching={**model.config.sequence_batching, **section})
    pool = InstancePool(model.config.name, [model.runner] + [model.new_instance() for _ in range(instances - 1)])
    return SequenceBatcher(config, pool), pool


def _reference(model: LoadedModel, xs: list[np.ndarray]) -> list[np.ndarray]:
    """One sequence alone: the runner called directly, carrying the state by hand."""
    batched = model.config.max_batch_size > 0
    h = np.full(8, INITIAL, np.float32)
    ys = []
    for x in xs:
        out = model.runner(x=x, h_in=h[None] if batched else h)
        ys.append(out["y"])
        h = out["h_out"][0] if batched else out["h_out"]
    return ys


def _rows(rng: np.random.Generator, n: int, width: int = 4) -> list[np.ndarray]:
    return list(rng.standard_normal((n, 1, width)).astype(np.float32))


def _close(got: list[Any], want: list[np.ndarray]) -> bool:
    return len(got) == len(want) and all(np.allclose(g, w, rtol=1e-6, atol=1e-6) and np.shape(g) == np.shape(w)
                                         for g, w in zip(got, want))


@pytest.mark.parametrize(("strategy", "instances", "delay_us"), [("direct", 1, 0), ("direct", 2, 0), ("oldest", 1, 0), ("oldest", 2, 300)])
def test_interleaved_sequences_each_equal_a_run_alone(repo: Repository, strategy: str, instances: int, delay_us: int) -> None:
    rng = np.random.default_rng(_seed())
    model = repo.get("cell")
    ids: list[int | str] = [5, "5", 2**64 - 1, *(int(i) * 7919 + 1 for i in range(17)), *(f"seq-{i}" for i in range(16))]
    xs = [_rows(rng, int(rng.integers(1, 9))) for _ in ids]
    pipelined = [rng.random(len(x)) < 0.5 for x in xs]  # submit without waiting for the previous one
    yields = [rng.integers(0, 3, len(x)) for x in xs]

    async def sequence(b: SequenceBatcher, k: int) -> list[Any]:
        steps: list[asyncio.Task[dict[str, Any]]] = []
        for i, x in enumerate(xs[k]):
            # tasks start in the order created: the requests are submitted in order
            steps.append(asyncio.ensure_future(b.infer({"x": x}, sequence_id=ids[k], start=i == 0, end=i == len(xs[k]) - 1)))
            if not pipelined[k][i]:
                await steps[-1]
            for _ in range(int(yields[k][i])):
                await asyncio.sleep(0)
        return [(await s)["y"] for s in steps]

    async def main() -> tuple[list[list[Any]], SequenceBatcher]:
        b, pool = _batcher(model, instances, strategy=strategy, max_queue_delay_us=delay_us)
        order = rng.permutation(len(ids))
        got = await asyncio.gather(*(sequence(b, int(k)) for k in order))
        assert b.active == 0  # every sequence ended
        await b.close()
        pool.close()
        out: list[list[Any]] = [[] for _ in ids]
        for k, ys in zip(order, got):
            out[int(k)] = ys
        return out, b

    got, b = asyncio.run(main())
    for k in range(len(ids)):
        assert _close(got[k], _reference(model, xs[k])), f"sequence {ids[k]!r}"
    total = sum(map(len, xs))
    assert (b.stats.requests, b.stats.rows, b.stats.failed) == (total, total, 0)
    assert max(b.stats.batch_sizes) > 1 and max(b.stats.batch_sizes) <= 4


def test_requests_for_sequences_that_are_not_live_are_refused(repo: Repository) -> None:
    rng = np.random.default_rng(_seed())
    (x,) = _rows(rng, 1)

    async def main() -> None:
        b, pool = _batcher(repo.get("cell"), max_sequence_idle_us=20000)
        with pytest.raises(SequenceError, match=r"^model 'cell': sequence 7 is unknown or has expired \(idle longer than 20000 µs\); a sequence's first request must set start$"):
            await b.infer({"x": x}, sequence_id=7)
        await b.infer({"x": x}, sequence_id=7, start=True, end=True)
        with pytest.raises(SequenceError, match="sequence 7 is unknown"):
            await b.infer({"x": x}, sequence_id=7)
        # a request after an end that is still queued
        ending = asyncio.ensure_future(b.infer({"x": x}, sequence_id="e", start=True, end=True))
        await asyncio.sleep(0)
        with pytest.raises(SequenceError, match="sequence 'e' is unknown"):
            await b.infer({"x": x}, sequence_id="e")
        await ending
        # idle expiry: the state and slot are dropped, a later request without start is refused
        await b.infer({"x": x}, sequence_id="idle", start=True)
        assert b.active == 1
        await asyncio.sleep(0.1)
        assert b.active == 0
        with pytest.raises(SequenceError, match="sequence 'idle' is unknown or has expired"):
            await b.infer({"x": x}, sequence_id="idle")
        for bad in (0, -1, 2**64, True, "", 1.5, None, b"id"):
            with pytest.raises(SequenceError, match="correlation id"):
                await b.infer({"x": x}, sequence_id=bad, start=True)
        with pytest.raises(RequestError, match="'x' has shape \\[2, 4\\]"):
            await b.infer({"x": np.concatenate([x, x])}, sequence_id=8, start=True)
        with pytest.raises(RequestError, match="'x' has shape \\[4\\]"):
            await b.infer({"x": x[0]}, sequence_id=8, start=True)
        assert b.active == 0
        await b.close()
        pool.close()

    asyncio.run(main())


def test_start_on_a_live_sequence_resets_its_state_after_its_queued_requests(repo: Repository) -> None:
    rng = np.random.default_rng(_seed())
    model = repo.get("cell")
    a, c = _rows(rng, 3), _rows(rng, 2)

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        b, pool = _batcher(model)
        first = [(await b.infer({"x": x}, sequence_id=1, start=i == 0))["y"] for i, x in enumerate(a)]
        again = [(await b.infer({"x": x}, sequence_id=1, start=i == 0))["y"] for i, x in enumerate(c)]
        # the restart queued behind two requests of the same sequence
        queued = await asyncio.gather(*(b.infer({"x": x}, sequence_id=1, start=i in (0, 3)) for i, x in enumerate(a[:3] + c)))
        await b.close()
        pool.close()
        return first, again, [q["y"] for q in queued]

    first, again, queued = asyncio.run(main())
    assert _close(first, _reference(model, a))
    assert _close(again, _reference(model, c))
    assert _close(queued, _reference(model, a) + _reference(model, c))


def test_direct_keeps_each_sequence_on_its_slots_instance(repo: Repository) -> None:
    rng = np.random.default_rng(_seed())
    model = repo.get("acc")  # direct, max_batch_size 2: with 2 instances, slots 0-1 on 0 and 2-3 on 1

    async def main() -> None:
        b, pool = _batcher(model, 2)
        tokens = [r.model.token for r in pool.runners]
        assert len(set(tokens)) == 2
        h = {k: np.full(3, INITIAL, np.float32) for k in range(6)}

        async def step(k: int, start: bool = False, end: bool = False) -> int:
            x = rng.standard_normal((1, 3)).astype(np.float32)
            out = await b.infer({"x": x}, sequence_id=k + 1, start=start, end=end)
            h[k] = h[k] + x[0]
            assert np.allclose(out["y"], 2 * h[k][None], atol=1e-6)
            return int(out["who"][0, 0])

        whos = await asyncio.gather(*(step(k, start=True) for k in range(4)))  # slots 0, 1, 2, 3
        assert whos == [tokens[0], tokens[0], tokens[1], tokens[1]]
        for _ in range(int(rng.integers(2, 5))):
            order = [int(k) for k in rng.permutation(4)]
            assert await asyncio.gather(*(step(k) for k in order)) == [tokens[k // 2] for k in order]
        await asyncio.gather(step(1, end=True), step(2, end=True))  # frees slots 1 and 2
        assert list(await asyncio.gather(step(4, start=True), step(5, start=True))) == [tokens[0], tokens[1]]
        order = [0, 3, 4, 5]
        assert await asyncio.gather(*(step(k) for k in order)) == [tokens[0], tokens[1], tokens[0], tokens[1]]
        assert await step(5) == tokens[1]  # alone, while instance 0 is free: still on its own instance
        assert max(b.stats.batch_sizes) == 2
        await b.close()
        pool.close()

    asyncio.run(main())


def test_oldest_batches_the_oldest_waiting_requests_first(repo: Repository) -> None:
    rng = np.random.default_rng(_seed())

    async def main() -> list[int]:
        b, pool = _batcher(repo.get("acc"), strategy="oldest", max_candidate_sequences=4)  # 2 rows a batch
        x = rng.standard_normal((1, 3)).astype(np.float32)
        await asyncio.gather(*(b.infer({"x": x}, sequence_id=k, start=True) for k in (1, 2, 3, 4)))
        done: list[int] = []

        async def step(k: int) -> None:
            await b.infer({"x": x}, sequence_id=k)
            done.append(k)

        await asyncio.gather(*(step(k) for k in (4, 3, 2, 1)))  # submitted newest slot first
        await b.close()
        pool.close()
        return done

    done = asyncio.run(main())
    assert sorted(done[:2]) == [3, 4] and sorted(done[2:]) == [1, 2]


@pytest.mark.parametrize("strategy", ["direct", "oldest"])
def test_requests_of_different_shapes_never_share_a_batch(repo: Repository, strategy: str) -> None:
    rng = np.random.default_rng(_seed())
    widths = [1, 3, 3, 1]
    xs = [[rng.standard_normal((1, w)).astype(np.float32) for _ in range(3)] for w in widths]

    async def main() -> tuple[list[list[Any]], SequenceBatcher]:
        b, pool = _batcher(repo.get("acc"), 2, strategy=strategy)  # 4 sequences, 2 rows a batch

        async def sequence(k: int) -> list[Any]:
            return [(await b.infer({"x": x}, sequence_id=k + 1, start=i == 0))["y"] for i, x in enumerate(xs[k])]

        got = await asyncio.gather(*(sequence(k) for k in range(4)))
        await b.close()
        pool.close()
        return got, b

    got, b = asyncio.run(main())
    for k, ys in enumerate(got):
        assert _close(ys, [2 * (INITIAL + sum(xs[k][:i + 1])) * np.ones((1, 3), np.float32) for i in range(3)])
    assert b.stats.failed == 0


def test_a_sequence_idle_too_long_expires_even_before_its_timer_runs(repo: Repository) -> None:
    x = np.random.default_rng(_seed()).standard_normal((1, 3)).astype(np.float32)

    async def main() -> None:
        b, pool = _batcher(repo.get("acc"), max_sequence_idle_us=20000)
        await b.infer({"x": x}, sequence_id=1, start=True)
        time.sleep(0.05)  # blocks the loop: the expiry timer cannot run, the lazy check must see it
        with pytest.raises(SequenceError, match="sequence 1 is unknown or has expired"):
            await b.infer({"x": x}, sequence_id=1)
        assert b.active == 0
        await b.close()
        pool.close()

    asyncio.run(main())


@pytest.mark.parametrize("strategy", ["direct", "oldest"])
def test_a_start_waits_for_a_free_slot(repo: Repository, strategy: str) -> None:
    rng = np.random.default_rng(_seed())
    x = rng.standard_normal((1, 3)).astype(np.float32)

    async def main() -> None:
        # two slots either way: direct, max_batch_size 2 on one instance; oldest, two candidates
        b, pool = _batcher(repo.get("acc"), strategy=strategy, max_candidate_sequences=2)
        await asyncio.gather(b.infer({"x": x}, sequence_id=1, start=True), b.infer({"x": x}, sequence_id=2, start=True))
        with pytest.raises(QueueTimeoutError, match="sequence 3 waited 20000 µs for one of the 2 sequence slots"):
            await b.infer({"x": x}, sequence_id=3, start=True, timeout_us=20000)
        assert b.stats.timed_out == 1 and b.active == 2
        waiting = asyncio.ensure_future(b.infer({"x": x}, sequence_id=3, start=True))
        follow = asyncio.ensure_future(b.infer({"x": 2 * x}, sequence_id=3))  # queued behind its start
        await asyncio.sleep(0.01)
        assert not waiting.done() and b.active == 3  # both slots are held (idle for up to 60 s)
        await b.infer({"x": x}, sequence_id=2, end=True)
        assert np.allclose((await waiting)["y"], 2 * (INITIAL + x), atol=1e-6)
        assert np.allclose((await follow)["y"], 2 * (INITIAL + 3 * x), atol=1e-6)
        # closing fails what still waits for a slot
        late = asyncio.ensure_future(b.infer({"x": x}, sequence_id=4, start=True))
        await asyncio.sleep(0.01)
        await b.close()
        with pytest.raises(BatchError, match="closed"):
            await late
        pool.close()

    asyncio.run(main())


@pytest.mark.parametrize("strategy", ["direct", "oldest"])
def test_max_batch_size_0_runs_requests_one_at_a_time(repo: Repository, strategy: str) -> None:
    rng = np.random.default_rng(_seed())
    model = repo.get("cell0")
    xs = [[x[0] for x in _rows(rng, int(rng.integers(1, 6)))] for _ in range(6)]

    async def main() -> tuple[list[list[Any]], SequenceBatcher]:
        b, pool = _batcher(model, 2, strategy=strategy)

        async def sequence(k: int) -> list[Any]:
            steps = [asyncio.ensure_future(b.infer({"x": x}, sequence_id=f"s{k}", start=i == 0, end=i == len(xs[k]) - 1))
                     for i, x in enumerate(xs[k])]
            return [(await s)["y"] for s in steps]

        got = await asyncio.gather(*(sequence(k) for k in range(len(xs))))
        await b.close()
        pool.close()
        return got, b

    got, b = asyncio.run(main())
    for k, x in enumerate(xs):
        assert _close(got[k], _reference(model, x))
    assert b.stats.batch_sizes == {1: sum(map(len, xs))}


def test_a_failed_batch_fails_its_requests_and_keeps_their_state(repo: Repository) -> None:
    rng = np.random.default_rng(_seed())
    model = repo.get("acc")
    marked = np.full((1, 3), MARK, np.float32)

    async def main() -> SequenceBatcher:
        b, pool = _batcher(model, strategy="oldest", max_candidate_sequences=4)
        h = {k: np.full(3, INITIAL, np.float32) for k in "abc"}

        async def step(k: str, start: bool = False) -> None:
            x = rng.standard_normal((1, 3)).astype(np.float32)
            out = await b.infer({"x": x}, sequence_id=k, start=start)
            h[k] = h[k] + x[0]
            assert np.allclose(out["y"], 2 * h[k][None], atol=1e-6)

        def failed(outcome: BaseException | dict[str, Any]) -> bool:
            return isinstance(outcome, BatchError) and "marked input" in str(outcome.__cause__)

        await asyncio.gather(*(step(k, start=True) for k in "abc"))
        with pytest.raises(BatchError, match="ValueError: marked input") as caught:
            await b.infer({"x": marked}, sequence_id="a")
        assert isinstance(caught.value.__cause__, ValueError)
        await asyncio.gather(*(step(k) for k in "cab"))
        # a batch holding a marked row fails as a whole: both its sequences keep their state
        both: list[Awaitable[Any]] = [b.infer({"x": marked}, sequence_id="b"), step("c")]
        outcomes = await asyncio.gather(*both, return_exceptions=True)
        assert failed(outcomes[0]) and isinstance(outcomes[1], BatchError)
        # (step raised before adding its x to h["c"]: the reference state is unchanged too)
        for _ in range(3):
            await asyncio.gather(*(step(k) for k in "abc"))
        await b.close()
        pool.close()
        return b

    b = asyncio.run(main())
    assert b.stats.failed == 3
