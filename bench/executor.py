"""Executor overhead: a 20-step pipeline of trivial ops against calling the same bound ops directly.

Each step is ``image.flip`` on a 1×1×1 uint8 image (a few µs of op dispatch, no real work), so
the difference between running the pipeline and calling the ops in a Python loop is what the
executor adds: gathering inputs, calling the step, storing outputs, releasing intermediates,
timing each step. Printed per step, in µs, for

- a chain of 20 steps, ``run`` (sync, inline in the caller's thread) and ``run_async``;
- 4 independent branches of 5 steps, concurrently on the thread pool and sequentially.

Target: ≤ 15 µs per step. Run: ``.venv/bin/python bench/executor.py [--repeat 7] [--number 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _results import record

from twinpipe.dag._executor import Executor
from twinpipe.dag._load import load_spec
from twinpipe.dag._resolved import ValidPipeline
from twinpipe.dag._validate import validate
from twinpipe.ops import BoundOp, get_op

STEPS = 20


def chain_yaml(n: int) -> str:
    lines = ["name: chain", "inputs:", "  x: {datatype: UINT8, shape: [-1, -1, -1, -1]}", "outputs:",
             f"  y: {{datatype: UINT8, shape: [-1, -1, -1, -1], from: s{n - 1}.image}}", "steps:"]
    for i in range(n):
        lines += [f"  s{i}:", "    op: image.flip", f"    inputs: {{image: {'x' if i == 0 else f's{i - 1}.image'}}}"]
    return "\n".join(lines) + "\n"


def branches_yaml(branches: int, length: int) -> str:
    lines = ["name: branches", "inputs:", "  x: {datatype: UINT8, shape: [-1, -1, -1, -1]}", "outputs:"]
    lines += [f"  y{b}: {{datatype: UINT8, shape: [-1, -1, -1, -1], from: b{b}_{length - 1}.image}}"
              for b in range(branches)]
    lines.append("steps:")
    for b in range(branches):
        for i in range(length):
            src = "x" if i == 0 else f"b{b}_{i - 1}.image"
            lines += [f"  b{b}_{i}:", "    op: image.flip", f"    inputs: {{image: {src}}}"]
    return "\n".join(lines) + "\n"


def load(text: str, folder: Path, name: str) -> ValidPipeline:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return validate(load_spec(path))


def best(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Seconds per call: the best of ``repeat`` means over ``number`` calls."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=2000, help="runs per measurement")
    parser.add_argument("--repeat", type=int, default=7, help="measurements (the best is kept)")
    args = parser.parse_args()
    x = np.zeros((1, 1, 1), np.uint8)
    bound: list[BoundOp] = [get_op("image.flip").bind() for _ in range(STEPS)]

    def direct_chain() -> np.ndarray:
        y = x
        for b in bound:
            y = b(y)
        return y

    def direct_branches() -> object:
        out = []
        for br in range(4):
            y = x
            for b in bound[br * 5 : br * 5 + 5]:
                y = b(y)
            out.append(y)
        return out

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        chain = Executor(load(chain_yaml(STEPS), folder, "chain"))
        branchy = load(branches_yaml(4, 5), folder, "branches")
        conc = Executor(branchy)
        seq = Executor(branchy, concurrent=False)

    inputs = {"x": x}
    assert np.array_equal(chain.run(inputs)["y"], direct_chain())
    n, r = args.number, args.repeat
    base = best(direct_chain, n, r)
    sync = best(lambda: chain.run(inputs), n, r)

    async def many() -> None:
        for _ in range(n):
            await chain.run_async(inputs)

    async def async_best() -> float:
        await chain.run_async(inputs)
        times = []
        for _ in range(r):
            t = time.perf_counter()
            await many()
            times.append((time.perf_counter() - t) / n)
        return min(times)

    asy = asyncio.run(async_best())
    base_b = best(direct_branches, n, r)
    conc_t = best(lambda: conc.run(inputs), n, r)
    seq_t = best(lambda: seq.run(inputs), n, r)

    def row(label: str, t: float, ref: float) -> None:
        per = (t - ref) / STEPS * 1e6
        record(f"{STEPS}-step pipeline of image.flip on a 1-pixel image", f"executor: {label}", t * 1e6, "µs",
               "the same ops called directly", ref * 1e6)
        print(f"{label:<44} {t * 1e6:9.1f} µs/run  {ref * 1e6:9.1f} µs direct  {per:6.2f} µs/step overhead  "
              f"{t / ref:5.2f}x")

    print(f"executor overhead: {STEPS} steps of image.flip on a 1x1x1 image, best of {r} x {n} runs")
    row("chain, run (sync, inline)", sync, base)
    row("chain, run_async (one hop to a thread)", asy, base)
    row("4 branches x 5, run (concurrent, thread pool)", conc_t, base_b)
    row("4 branches x 5, run (concurrent=False)", seq_t, base_b)
    print(f"direct call of one step: {base / STEPS * 1e6:.2f} µs; target: <= 15 µs/step overhead")


if __name__ == "__main__":
    main()
