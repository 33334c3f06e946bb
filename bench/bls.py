"""BLS overhead: what one ``ctx.infer`` from a python step costs, against calling the model directly.

The callee is a TorchScript ``nn.Identity`` (FP32 ``x`` [-1] → ``y``, no batching, the same model
as ``bench/server.py``), fed 1024 random floats. Rows, all measured in one run and interleaved
repeat by repeat (a busy spell of the shared machine lands on all of them):

* **direct runner call** — ``engine.get("identity").served.model.runner(x=x)`` in a loop: the bare
  model call, which every row but the bare hop pays too (the ratio column divides by it).
* **engine.infer_async** — ``await engine.infer_async("identity", {"x": x})`` in a loop from async
  code: the Engine's own per-request path, no pipeline.
* **bare hop** — a worker thread loops ``asyncio.run_coroutine_threadsafe(<no-op>, loop).result()``:
  the round trip thread → event loop → thread that a sync step's ``ctx.infer`` makes, with no work
  (two OS thread wake-ups; on a small VM their latency varies a lot from run to run).
* **ctx.infer (sync step)** — a pipeline whose sync python step (on a worker thread) loops
  ``ctx.infer("identity", {"x": x})`` ``--calls`` times a request. A callee with a queue (a
  batcher) is reached by hopping to the engine's event loop and waiting (the bare hop's price);
  this identity has none and runs inline, so the step's thread runs it itself and only the
  statistics go to the loop.
* **ctx.infer_async (async step)** — the same loop in an ``async def`` step (on the event loop) with
  ``await ctx.infer_async(...)``.

For the two step rows a control pipeline of the same kind (sync or async) runs the same loop
without calling anything, so a call costs (time with calls − time of the empty loop) / calls: the
pipeline request itself (executor, step dispatch, outputs) is not charged to the calls. Pipelines
are driven with ``await engine.infer_async`` on one asyncio loop, which is then the engine's loop
(as in the server, where grpc.aio's loop is). Each row runs ``--calls × --requests`` calls per
repeat, after a warm-up; the table shows the median over ``--repeats`` (and the min–max) in µs a
call. Target (issue 7): a ``ctx.infer`` call ≤ 50 µs on this machine.

Run: ``.venv/bin/python bench/bls.py [--calls 200] [--requests 10] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import torch

from twinpipe.runtime import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record
from server import FLOAT_COUNT, write_identity

TARGET_US = 50.0

# The loops the pipelines' python steps run; ``calls`` comes from the request's parameters.
STEPS = '''\
def with_calls(inputs, ctx):
    x, y = inputs["x"], inputs["x"]
    for _ in range(int(ctx.parameters["calls"])):
        y = ctx.infer("identity", {"x": x})["y"]
    return {"y": y}


def empty(inputs, ctx):
    x, y = inputs["x"], inputs["x"]
    for _ in range(int(ctx.parameters["calls"])):
        y = {"y": x}["y"]
    return {"y": y}


async def with_calls_async(inputs, ctx):
    x, y = inputs["x"], inputs["x"]
    for _ in range(int(ctx.parameters["calls"])):
        y = (await ctx.infer_async("identity", {"x": x}))["y"]
    return {"y": y}


async def empty_async(inputs, ctx):
    x, y = inputs["x"], inputs["x"]
    for _ in range(int(ctx.parameters["calls"])):
        y = {"y": x}["y"]
    return {"y": y}
'''

PIPELINES = ("with_calls", "empty", "with_calls_async", "empty_async")


def pipeline_yaml(name: str) -> str:
    return (f"name: {name}\n"
            "inputs: {x: {datatype: FP32, shape: [-1]}}\n"
            "outputs: {y: {datatype: FP32, shape: [-1], from: s.y}}\n"
            "steps:\n"
            f"  s: {{python: steps.py:{name}, inputs: {{x: x}}, outputs: {{y: {{datatype: FP32, shape: [-1]}}}}}}\n")


def build_repository(root: Path) -> Path:
    """The identity model and the four pipelines (two with calls, two empty controls)."""
    write_identity(root)  # the same model as bench/server.py's
    (root / "steps.py").write_text(STEPS)
    for name in PIPELINES:
        (root / f"{name}.yaml").write_text(pipeline_yaml(name))
    return root


async def measure(engine: Engine, x: np.ndarray, calls: int, requests: int, repeats: int) -> dict[str, list[float]]:
    """Seconds a call for each row, one value a repeat (the step rows net of their empty loop)."""
    runner = engine.get("identity").served.model.runner
    total = calls * requests
    params = {"calls": calls}

    def direct() -> None:
        for _ in range(total):
            runner(x=x)

    async def engine_calls() -> None:
        for _ in range(total):
            await engine.infer_async("identity", {"x": x})

    loop = asyncio.get_running_loop()

    async def nothing() -> None:
        pass

    def hops() -> None:
        for _ in range(total):
            asyncio.run_coroutine_threadsafe(nothing(), loop).result()

    async def hop_calls() -> None:  # from a worker thread, as a sync step calls
        await asyncio.to_thread(hops)

    def pipeline(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            for _ in range(requests):
                await engine.infer_async(name, {"x": x}, parameters=params)
        return run

    async def timed(fn: Callable[[], Awaitable[None] | None]) -> float:
        start = time.perf_counter()
        work = fn()
        if work is not None:
            await work
        return time.perf_counter() - start

    rows: dict[str, Callable[[], Awaitable[None] | None]] = {
        "direct": direct, "engine": engine_calls, "hop": hop_calls, **{name: pipeline(name) for name in PIPELINES}}
    for fn in rows.values():  # warm-up (and the first loop to call becomes the engine's)
        await timed(fn)
    out: dict[str, list[float]] = {"direct": [], "engine": [], "hop": [], "sync": [], "async": []}
    for _ in range(repeats):
        t = {key: await timed(fn) for key, fn in rows.items()}
        out["direct"].append(t["direct"] / total)
        out["engine"].append(t["engine"] / total)
        out["hop"].append(t["hop"] / total)
        out["sync"].append((t["with_calls"] - t["empty"]) / total)
        out["async"].append((t["with_calls_async"] - t["empty_async"]) / total)
    return out


async def check(engine: Engine, x: np.ndarray) -> None:
    """Every pipeline answers with x (the identity's output, or x itself for the controls)."""
    for name in PIPELINES:
        y = (await engine.infer_async(name, {"x": x}, parameters={"calls": 3})).outputs["y"]
        assert np.array_equal(np.asarray(y), x), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="ctx.infer calls in one pipeline request")
    parser.add_argument("--requests", type=int, default=10, help="pipeline requests in one repeat")
    parser.add_argument("--repeats", type=int, default=5, help="measurements a row (the median is shown)")
    args = parser.parse_args()

    print(f"command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    x = np.random.default_rng(int.from_bytes(os.urandom(4), "little")).standard_normal(FLOAT_COUNT).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(build_repository(Path(tmp)))

        async def run() -> dict[str, list[float]]:
            try:
                await check(engine, x)
                return await measure(engine, x, args.calls, args.requests, args.repeats)
            finally:
                await engine.aclose()

        results = asyncio.run(run())

    total = args.calls * args.requests
    print(f"\n{total} calls a repeat ({args.requests} pipeline requests × {args.calls} calls), {args.repeats} repeats; "
          "pipelines driven with `await engine.infer_async` (one asyncio loop, the engine's)\n")
    median = {k: statistics.median(v) * 1e6 for k, v in results.items()}
    labels = {"direct": "direct runner call (runner(x=x))", "engine": "await engine.infer_async (no pipeline)",
              "hop": "bare thread → loop → thread hop (run_coroutine_threadsafe of a no-op)",
              "sync": "ctx.infer (sync step), net of empty loop",
              "async": "await ctx.infer_async (async step), net of empty loop"}
    print("| row | µs per call (median, min–max) | × direct |")
    print("|---|---|---|")
    for key, label in labels.items():
        lo, hi = min(results[key]) * 1e6, max(results[key]) * 1e6
        print(f"| {label} | {median[key]:.1f} ({lo:.1f}–{hi:.1f}) | {median[key] / median['direct']:.1f} |")
    for key in ("engine", "sync", "async"):
        record("calling a tiny TorchScript model from a pipeline", labels[key], median[key], "µs",
               labels["direct"], median["direct"])
    ok = median["sync"] <= TARGET_US and median["async"] <= TARGET_US
    print(f"\nctx.infer ≤ {TARGET_US:.0f} µs per call: {'yes' if ok else 'no'} "
          f"(sync {median['sync']:.1f} µs, async {median['async']:.1f} µs)")


if __name__ == "__main__":
    main()
