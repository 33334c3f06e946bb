"""The sequence batcher: a stateful model serves many sequences at once, each keeping its own
state between requests (Triton's sequence batcher with implicit state).

    batcher = SequenceBatcher(config, pool)
    out = await batcher.infer({"x": x}, sequence_id=7, start=True)   # state: the initial value
    out = await batcher.infer({"x": x}, sequence_id=7)               # state: what the last one left
    out = await batcher.infer({"x": x}, sequence_id=7, end=True)     # then the sequence is released

Each ``sequence_batching: state`` tensor is fed to the model as its state input and replaced by
the model's state output (one row per sequence) after each successful request. A sequence's
requests run in the order submitted, one at a time; requests of different sequences share batches.

- ``direct``: a sequence holds a slot from its start until it ends or idles out; slot ``s`` is
  on instance ``s // max(max_batch_size, 1)``, so a sequence always runs on the same instance.
- ``oldest``: at most ``max_candidate_sequences`` sequences are live; a batch takes the oldest
  waiting requests of different sequences and runs on any free instance.

Starts beyond the slots wait (``timeout_us``); a sequence with nothing queued or running for
``max_sequence_idle_us`` is dropped. A batch waits up to ``max_queue_delay_us`` (default 0) to fill.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinpipe.dag import dtype_of

from ._batcher import BatchError, BatcherStats, QueueTimeoutError, RequestError, batch_key
from ._config import ModelConfig
from ._instances import InstancePool

__all__ = ["DEFAULT_IDLE_US", "SequenceBatcher", "SequenceError"]

DEFAULT_IDLE_US = 1_000_000  # Triton's max_sequence_idle_microseconds default
_MAX_ID = 2**64 - 1  # correlation ids are uint64 (0: none)


class SequenceError(ValueError):
    """A request for a sequence that is not live (unknown, ended, expired) without ``start``, or a
    correlation id that is not a non-zero uint64 or a non-empty string."""


@dataclass(frozen=True)
class _State:
    input: str
    output: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    initial: float


@dataclass(eq=False)
class _Request:
    inputs: dict[str, Any]
    key: tuple[Any, ...]
    seq: _Sequence
    start: bool
    end: bool
    arrival: float
    future: asyncio.Future[dict[str, Any]]


@dataclass(eq=False)
class _Sequence:
    id: int | str
    state: dict[str, np.ndarray]  # state input name → this sequence's tensor (no batch dim)
    queue: deque[_Request] = field(default_factory=deque)  # submitted, not yet running
    slot: int | None = None  # None: waiting in the backlog (or dropped)
    running: bool = False
    ending: bool = False  # its last submitted request sets end
    idle_since: float | None = None  # loop time it went idle (nothing queued or running)
    idle_timer: asyncio.TimerHandle | None = None
    start_timer: asyncio.TimerHandle | None = None  # the start's timeout while in the backlog


class SequenceBatcher:
    """Batches the requests of live sequences in front of ``pool``, keeping each one's state."""

    def __init__(self, config: ModelConfig, pool: InstancePool) -> None:
        section = config.sequence_batching or {}
        self.config, self.pool, self.name = config, pool, config.name
        self.stats = BatcherStats()
        self.strategy: str = section.get("strategy") or "direct"
        self.rows = max(config.max_batch_size, 1)  # requests (rows) a batch may hold
        self.idle_us: int = section.get("max_sequence_idle_us") or DEFAULT_IDLE_US
        self.delay_us: int = section.get("max_queue_delay_us") or 0
        slots = self.rows * len(pool)
        if self.strategy == "oldest":
            slots = section.get("max_candidate_sequences") or slots
        self.slots: int = slots
        self._states = tuple(_State(s["input"], s["output"], dtype_of(s["datatype"]), tuple(s["shape"]), s["initial"])
                             for s in (section.get("state") or {}).values())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._seqs: dict[int | str, _Sequence] = {}  # live ones (admitted or in the backlog) by id
        self._slots: list[_Sequence | None] = [None] * self.slots
        self._backlog: deque[_Sequence] = deque()  # started, waiting for a slot
        self._busy = [False] * len(self.pool)  # lanes: one batch at a time per instance
        self._tasks: dict[asyncio.Task[None], list[_Request]] = {}
        self._kicked: asyncio.Handle | None = None
        self._delay: asyncio.TimerHandle | None = None

    @property
    def active(self) -> int:
        """Live sequences: started, not ended or expired (those waiting for a slot included)."""
        return len(self._seqs)

    async def infer(self, inputs: Mapping[str, Any], *, sequence_id: int | str, start: bool = False,
                    end: bool = False, timeout_us: int | None = None) -> dict[str, Any]:
        """Run one request of sequence ``sequence_id`` (after its earlier ones) and return the
        declared outputs. ``timeout_us``: how long a new sequence may wait for a slot. A request
        whose caller stops waiting still runs: the sequence's later state depends on it."""
        loop = self._bind()
        if self._closed:
            raise BatchError(f"model {self.name!r}: the sequence batcher is closed")
        sid = self._check_id(sequence_id)
        request_inputs = dict(inputs)
        key = self._key(request_inputs)
        seq = self._live(sid, loop.time())
        if not start and (seq is None or seq.ending):
            raise SequenceError(f"model {self.name!r}: sequence {sid!r} is unknown or has expired (idle longer than "
                                f"{self.idle_us} µs); a sequence's first request must set start")
        if seq is None:
            seq = self._seqs[sid] = _Sequence(sid, self._initial())
            self._backlog.append(seq)
            self._admit()
            if seq.slot is None and timeout_us is not None:
                seq.start_timer = loop.call_later(timeout_us / 1e6, self._start_timeout, seq, timeout_us)
        # a restart of a live sequence keeps its slot; its state resets when the request runs
        req = _Request(request_inputs, key, seq, start, end, loop.time(), loop.create_future())
        seq.queue.append(req)
        seq.ending = end
        seq.idle_since = None
        if seq.idle_timer is not None:
            seq.idle_timer.cancel()
            seq.idle_timer = None
        self.stats.requests += 1
        self._kick()
        return await req.future

    # -- checks --------------------------------------------------------------------------------

    def _check_id(self, sid: Any) -> int | str:
        if isinstance(sid, int) and not isinstance(sid, bool) and 1 <= sid <= _MAX_ID:
            return sid
        if isinstance(sid, str) and sid:
            return sid
        raise SequenceError(f"model {self.name!r}: correlation id {sid!r} is not valid; a sequence id is a non-zero "
                            "integer below 2**64 or a non-empty string")

    def _key(self, inputs: dict[str, Any]) -> tuple[Any, ...]:
        if self.config.max_batch_size == 0:
            return ()  # requests run one at a time: nothing to agree on
        for name, x in inputs.items():
            if np.shape(x)[:1] != (1,):
                raise RequestError(f"model {self.name!r}: input {name!r} has shape {list(np.shape(x))}; a sequence request "
                                   "is one row, so its leading (batch) dimension must be 1")
        return batch_key(inputs)[1]

    def _initial(self) -> dict[str, np.ndarray]:
        return {s.input: np.full(s.shape, s.initial, s.dtype) for s in self._states}

    # -- sequences: live, admitted, idle, dropped ----------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop: what an old one held (futures, timers) is gone
            if self._loop is not None:
                self._reset()
            self._loop = loop
        return loop

    def _live(self, sid: int | str, now: float) -> _Sequence | None:
        seq = self._seqs.get(sid)
        if seq is not None and seq.idle_since is not None and now - seq.idle_since > self.idle_us / 1e6:
            self._drop(seq)  # its expiry timer has not run yet
            return None
        return seq

    def _admit(self) -> None:
        """Give free slots to the oldest starts in the backlog (the lowest free slot first)."""
        while self._backlog and None in self._slots:
            seq = self._backlog.popleft()
            seq.slot = self._slots.index(None)
            self._slots[seq.slot] = seq
            if seq.start_timer is not None:
                seq.start_timer.cancel()
                seq.start_timer = None
            self._kick()

    def _drop(self, seq: _Sequence) -> None:
        """Release a sequence: its id, slot and state."""
        if self._seqs.get(seq.id) is seq:
            del self._seqs[seq.id]
        if seq.slot is not None:
            self._slots[seq.slot] = None
            seq.slot = None
        elif seq in self._backlog:
            self._backlog.remove(seq)
        for timer in (seq.idle_timer, seq.start_timer):
            if timer is not None:
                timer.cancel()
        seq.idle_timer = seq.start_timer = None
        self._admit()

    def _expire(self, seq: _Sequence) -> None:
        seq.idle_timer = None
        if seq.idle_since is not None:
            self._drop(seq)

    def _start_timeout(self, seq: _Sequence, timeout_us: int) -> None:
        seq.start_timer = None
        if seq.slot is not None or self._seqs.get(seq.id) is not seq:
            return
        self._drop(seq)
        error = QueueTimeoutError(f"model {self.name!r}: sequence {seq.id!r} waited {timeout_us} µs for one of the "
                                  f"{self.slots} sequence slots (timeout) and was not started")
        for r in seq.queue:
            if not r.future.done():
                self.stats.timed_out += 1
                r.future.set_exception(error)
        seq.queue.clear()

    def _finished(self, req: _Request) -> None:
        seq = req.seq
        seq.running = False
        if seq.queue:
            return  # after an end only a start is accepted: the sequence goes on, restarted
        if req.end:
            self._drop(seq)
        elif self._loop is not None:
            seq.idle_since = self._loop.time()
            seq.idle_timer = self._loop.call_later(self.idle_us / 1e6, self._expire, seq)

    # -- batches -------------------------------------------------------------------------------

    def _kick(self) -> None:
        """Form batches soon: requests submitted in the same loop iteration can share one."""
        if self._kicked is None and self._loop is not None and not self._closed:
            self._kicked = self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._kicked = None
        if self._delay is not None:
            self._delay.cancel()
            self._delay = None
        assert self._loop is not None
        now, wake = self._loop.time(), None
        for lane in range(len(self.pool)):
            if self._busy[lane]:
                continue
            heads = self._heads(lane)
            if not heads:
                continue
            oldest = min(heads, key=lambda r: r.arrival)
            batch = [r for r in heads if r.key == oldest.key][:self.rows]
            wait = oldest.arrival + self.delay_us / 1e6 - now
            if len(batch) < self.rows and wait > 0:  # let it fill a little longer
                wake = wait if wake is None else min(wake, wait)
                continue
            self._launch(batch, lane)
        if wake is not None:
            self._delay = self._loop.call_later(wake, self._kick)

    def _heads(self, lane: int) -> list[_Request]:
        """The next requests of the sequences a batch on ``lane`` may take: direct, its
        instance's slots in slot order; oldest, every live sequence's, oldest first."""
        if self.strategy == "direct":
            seqs = self._slots[lane * self.rows:(lane + 1) * self.rows]
            return [s.queue[0] for s in seqs if s is not None and s.queue and not s.running]
        heads = [s.queue[0] for s in self._slots if s is not None and s.queue and not s.running]
        return sorted(heads, key=lambda r: r.arrival)

    def _launch(self, batch: list[_Request], lane: int) -> None:
        assert self._loop is not None
        self._busy[lane] = True
        for r in batch:
            r.seq.queue.popleft()
            r.seq.running = True
            if r.start:  # a (re)start: the state resets here, after the sequence's earlier requests
                r.seq.state = self._initial()
        task = self._loop.create_task(self._run(batch, lane))
        self._tasks[task] = batch
        task.add_done_callback(lambda t: self._tasks.pop(t, None))

    async def _run(self, batch: list[_Request], lane: int) -> None:
        loop, s, rows = asyncio.get_running_loop(), self.stats, len(batch)
        start = loop.time()
        s.batches, s.rows = s.batches + 1, s.rows + rows
        s.batch_sizes[rows] = s.batch_sizes.get(rows, 0) + 1
        s.queue_ns += sum(int((start - r.arrival) * 1e9) for r in batch)
        try:
            instance = lane if self.strategy == "direct" else None
            outputs = await self.pool.run(self._feed(batch), instance=instance)
            results, states = self._split(outputs, rows)
        except Exception as e:  # the batch's sequences keep the state they had
            s.failed += rows
            error = BatchError(f"model {self.name!r}: the batch of {rows} sequence request(s) failed: {type(e).__name__}: {e}")
            error.__cause__ = e
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(error)
        else:
            for r, result, state in zip(batch, results, states):
                r.seq.state = state
                if not r.future.done():
                    r.future.set_result(result)
        finally:
            s.compute_ns += int((loop.time() - start) * 1e9)
            self._busy[lane] = False
            if not self._closed:
                for r in batch:
                    self._finished(r)
                self._kick()

    def _feed(self, batch: list[_Request]) -> dict[str, Any]:
        """The model's inputs: the requests' rows stacked, then each sequence's state."""
        if self.config.max_batch_size == 0:
            r = batch[0]  # a copy of the state: the model may write into its inputs
            return {**r.inputs, **{st.input: r.seq.state[st.input].copy() for st in self._states}}
        feed = {name: np.concatenate([np.asarray(r.inputs[name]) for r in batch]) if len(batch) > 1 else x
                for name, x in batch[0].inputs.items()}
        feed.update({st.input: np.stack([r.seq.state[st.input] for r in batch]) for st in self._states})
        return feed

    def _split(self, outputs: Mapping[str, Any], rows: int) -> tuple[list[dict[str, Any]], list[dict[str, np.ndarray]]]:
        """Per row: the declared outputs, and the next state (a copy, checked against its shape)."""
        batched = self.config.max_batch_size > 0
        names = [d.name for d in self.config.outputs] + [st.output for st in self._states]
        missing = [n for n in names if n not in outputs]
        if missing:
            raise ValueError(f"the model returned no {', '.join(missing)}")
        wrong = {n: list(np.shape(outputs[n])) for n in names if batched and np.shape(outputs[n])[:1] != (rows,)}
        if wrong:
            raise ValueError(f"outputs {wrong} do not have the batch's {rows} rows as their first dimension")
        results = [{d.name: outputs[d.name][i:i + 1] if batched else outputs[d.name] for d in self.config.outputs}
                   for i in range(rows)]
        states = [{st.input: self._next_state(st, outputs[st.output][i] if batched else outputs[st.output])
                   for st in self._states} for i in range(rows)]
        return results, states

    @staticmethod
    def _next_state(st: _State, value: Any) -> np.ndarray:
        arr = np.asarray(value)
        if arr.shape != st.shape:
            raise ValueError(f"state output {st.output!r} has shape {list(arr.shape)} per sequence; the state's shape is {list(st.shape)}")
        return np.array(arr, dtype=st.dtype)  # a copy: the batch's buffer is not kept alive or shared

    async def close(self) -> None:
        """Stop: running batches are cancelled, and what is queued or running fails with a clear error."""
        self._closed = True
        for handle in (self._kicked, self._delay):
            if handle is not None:
                handle.cancel()
        tasks = dict(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        error = BatchError(f"model {self.name!r}: the sequence batcher was closed before the request finished")
        pending = [r for batch in tasks.values() for r in batch] + [r for s in self._seqs.values() for r in s.queue]
        for r in pending:
            if not r.future.done():
                r.future.set_exception(error)
        for seq in list(self._seqs.values()):
            self._drop(seq)
