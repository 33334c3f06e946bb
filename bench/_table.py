"""What every benchmark here shares: median timing and the Markdown table of ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from _results import record

Row = tuple[str, str, Callable[[], Any]]  # (task, implementation, zero-argument call); twinpipe first per task


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def print_table(rows: Sequence[Row], repeat: int, title: str) -> None:
    """Median ms per row, and each row's ratio to the first row of its task (twinpipe's)."""
    print(f"\n## {title} (median of {repeat}, ms; ratio = time / twinpipe's)\n")
    print("| task | implementation | ms | ratio |\n|---|---|---:|---:|")
    ours: dict[str, tuple[str, float]] = {}
    for task, name, fn in rows:
        ms = median_ms(fn, repeat)
        mine, my_ms = ours.setdefault(task, (name, ms))
        if mine != name:
            record(f"{task} ({title.split(',')[-1].strip()})", mine, my_ms, "ms", name, ms)
        print(f"| {task} | {name} | {ms:.3f} | {ms / ours[task][1]:.2f} |", flush=True)
