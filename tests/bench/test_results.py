"""bench/_results.record and the one table bench/run_all.py builds from the records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(code: str, env_file: Path | None, cwd: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"} | ({"TWINPIPE_BENCH_RECORD": str(env_file)} if env_file else {})
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(BENCH)!r})\n{code}"], check=True, env=env, cwd=cwd)


def test_records_go_to_the_named_file_and_ratios_say_who_did_better(tmp_path: Path) -> None:
    out = tmp_path / "records.jsonl"
    _run("from _results import record\n"
         "record('resize', 'fused', 0.25, 'ms', 'torchvision v2', 1.0)\n"
         "record('gRPC', 'serve', 700.0, 'req/s', 'floor', 1000.0, higher_is_better=True)\n", out, tmp_path)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["peer"] for r in rows] == ["torchvision v2", "floor"]
    sys.path.insert(0, str(BENCH))
    try:
        from _results import Result
        from run_all import results_table
    finally:
        sys.path.remove(str(BENCH))
    results = [Result(**r) for r in rows]
    assert results[0].ratio == 4.0          # a quarter of the peer's time: 4× better
    assert results[1].ratio == 0.7          # 70% of the floor's rate
    table = results_table([("python bench/x.py", r) for r in results]).splitlines()
    assert table[2] == "| resize | fused | 0.250 ms | torchvision v2 | 1.00 ms | 4.00 | `python bench/x.py` |"
    assert table[3].startswith("| gRPC | serve | 700 req/s | floor | 1000 req/s | 0.70 |")


def test_without_run_all_nothing_is_recorded(tmp_path: Path) -> None:
    _run("from _results import record\nrecord('t', 'a', 1.0, 'ms', 'b', 2.0)\n", None, tmp_path)
    assert list(tmp_path.iterdir()) == []
