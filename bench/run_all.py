"""Run every benchmark of ``bench/`` in one go and collect what each printed into one file.

    .venv/bin/python bench/run_all.py [--out bench/RESULTS.md] [--only server bls]   # or: make bench

Each benchmark measures twinpipe against its peers in the same run and prints markdown tables
with the ratios; this runs them one after another (never two at once: they share the machine's
cores), and writes ``bench/RESULTS.md``: the machine, the date, then per benchmark its command,
how long it took and its tables and verdict lines, as printed. A benchmark that fails is
recorded with its exit status and the end of its output, and the others still run.

Above the details stands one table of every comparison the benchmarks recorded (``_results.record``):
the task, twinpipe's figure, the peer measured in the same run and its figure, and the ratio,
oriented so that > 1 always means twinpipe did better (peer time ÷ ours, or our rate ÷ the peer's).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _results import ENV, Result

__all__ = ["BENCHMARKS", "main", "results_table"]

HERE = Path(__file__).resolve().parent

#: name → (script, its arguments): the CPU benchmarks, each a peer comparison in one run
BENCHMARKS: dict[str, list[str]] = {
    "ops_cpu": ["ops_cpu.py"],
    "executor": ["executor.py"],
    "batching": ["batching.py"],
    "server": ["server.py"],
    "bls": ["bls.py"],
}


def _machine() -> str:
    import numpy
    import torch

    return (f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
            f"numpy {numpy.__version__}, torch {torch.__version__}")


def _kept(output: str) -> str:
    """The tables, headings and verdict lines of a benchmark's output (not its progress lines);
    a benchmark that prints no markdown table is kept whole, as text."""
    if not any(line.startswith("|") for line in output.splitlines()):
        return f"```text\n{output.strip()}\n```"
    keep = []
    for line in output.splitlines():
        if line.startswith(("|", "#")) or "≥" in line or "≤" in line or line.lower().startswith(("target", "command", "machine")):
            keep.append(line)
        elif keep and keep[-1] != "" and not line.strip():
            keep.append("")
    return "\n".join(keep).strip()


def _figure(value: float, unit: str) -> str:
    digits = 0 if unit == "req/s" or value >= 100 else 1 if value >= 10 else 2 if value >= 1 else 3
    return f"{value:.{digits}f} {unit}"


def results_table(rows: list[tuple[str, Result]]) -> str:
    """One Markdown table of (command, recorded comparison) rows."""
    lines = ["| task | twinpipe | figure | peer (same run) | peer's figure | ratio | command |",
             "|---|---|---:|---|---:|---:|---|"]
    for command, r in rows:
        lines.append(f"| {r.task} | {r.ours} | {_figure(r.figure, r.unit)} | {r.peer} | "
                     f"{_figure(r.peer_figure, r.unit)} | {r.ratio:.2f} | `{command}` |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    args = ap.parse_args()
    names = args.only or list(BENCHMARKS)
    parts = [f"# twinpipe benchmark results\n\nmachine: {_machine()}  \ndate: {datetime.date.today()}  \n"
             f"command: `{sys.executable} bench/run_all.py{' --only ' + ' '.join(names) if args.only else ''}`\n"]
    failed = 0
    details: list[str] = []
    recorded: list[tuple[str, Result]] = []
    for name in names:
        command = [sys.executable, str(HERE / BENCHMARKS[name][0]), *BENCHMARKS[name][1:]]
        shown = " ".join(["python", f"bench/{BENCHMARKS[name][0]}", *BENCHMARKS[name][1:]])
        print(f"running {shown} ...", flush=True)
        record_file = args.out.with_name(f".{name}.records.jsonl")
        record_file.unlink(missing_ok=True)
        start = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, ENV: str(record_file)})
        took = time.perf_counter() - start
        if record_file.exists():
            recorded += [(shown, Result(**json.loads(line))) for line in record_file.read_text().splitlines()]
            record_file.unlink()
        if run.returncode != 0:
            failed += 1
            tail = (run.stdout + run.stderr)[-2000:]
            details.append(f"## {name}: FAILED (exit {run.returncode}, {took:.0f} s)\n\n`{shown}`\n\n```\n{tail}\n```\n")
            continue
        details.append(f"## {name} ({took:.0f} s)\n\n`{shown}`\n\n{_kept(run.stdout)}\n")
    parts.append("## Every comparison, one table\n\nratio > 1: twinpipe did better (the peer's time ÷ ours, or our "
                 "rate ÷ the peer's); each peer was measured in the same run, on this machine.\n\n"
                 + results_table(recorded) + "\n")
    parts.append("# Details, as each benchmark printed them\n")
    args.out.write_text("\n".join(parts + details))
    print(f"wrote {args.out}" + (f"; {failed} benchmark(s) failed" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
