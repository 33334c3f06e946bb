"""One row of the collected results table: a twinpipe figure, a peer's figure from the same run, and
the ratio between them, always oriented so that > 1 means twinpipe did better.

Each benchmark calls ``record`` for the comparisons it makes; when ``bench/run_all.py`` runs it, the
rows go (as JSON lines) to the file named by ``$TWINPIPE_BENCH_RECORD`` and end up in one table
(``bench/RESULTS.md``). Run on its own, a benchmark records nothing and prints its own tables.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

__all__ = ["ENV", "Result", "record"]

ENV = "TWINPIPE_BENCH_RECORD"


@dataclass(frozen=True)
class Result:
    task: str
    ours: str             # which twinpipe path
    figure: float         # twinpipe's figure, in unit
    unit: str             # "ms", "µs", "req/s", …
    peer: str             # what it is compared with (a peer library, a floor, a hand-written server)
    peer_figure: float
    higher_is_better: bool

    @property
    def ratio(self) -> float:
        """twinpipe ÷ peer for rates, peer ÷ twinpipe for times: > 1 means twinpipe did better."""
        if self.higher_is_better:
            return self.figure / self.peer_figure
        return self.peer_figure / self.figure


def record(task: str, ours: str, figure: float, unit: str, peer: str, peer_figure: float, *,
           higher_is_better: bool = False) -> None:
    """Add one comparison to the collected table (a no-op unless run by bench/run_all.py)."""
    path = os.environ.get(ENV)
    if not path:
        return
    row = Result(task, ours, figure, unit, peer, peer_figure, higher_is_better)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(row)) + "\n")
