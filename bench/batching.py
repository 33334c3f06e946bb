"""Dynamic batching: a small CNN served with and without the batcher, at concurrency 1, 8, 32.

Each of C clients sends one-image requests back to back (a closed loop, like perf_analyzer's
concurrency mode) for ``--seconds``; the table gives throughput, p50 and p99 latency, and the
batched/unbatched throughput ratio at the same concurrency. Batching runs twice: with
max_queue_delay_us 2000 (a lone request waits up to 2 ms for company) and 0 (a batch is what
queued while the instance was busy: no added latency).

The latency bound of a batched row is its max_queue_delay plus the p99 of one batch's compute as
the server sees it (from the batch leaving the queue to its results: stacking, the hop to the
instance thread, the model, copies, splitting), observed per batch. A full batch of
``max_batch_size`` is also timed on its own (the model call alone) for reference. Targets:
>= 3x throughput at concurrency 32; p99 within the bound.

Run: ``.venv/bin/python bench/batching.py [--seconds 4] [--device cpu|cuda] [--instances 1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _results import record

from twinpipe.models import load_repository
from twinpipe.models._serving import ServedModel

MAX_BATCH = 32
DELAY_US = 2000

CONFIG = """\
name: {name}
backend: torchscript
max_batch_size: {max_batch}
inputs:
  pixels: {{datatype: FP32, shape: [3, 32, 32]}}
outputs:
  logits: {{datatype: FP32, shape: [10]}}
device: {device}
instances: {{count: {instances}}}
{batching}"""


def small_cnn() -> torch.nn.Module:
    """Three conv blocks and a linear head (about 24k parameters): a CIFAR-sized vision model."""
    torch.manual_seed(0)
    c = torch.nn

    def block(i: int, o: int) -> list[torch.nn.Module]:
        return [c.Conv2d(i, o, 3, padding=1), c.BatchNorm2d(o), c.ReLU(), c.MaxPool2d(2)]

    return c.Sequential(*block(3, 16), *block(16, 32), *block(32, 64),
                        c.AdaptiveAvgPool2d(1), c.Flatten(), c.Linear(64, 10)).eval()


def build_repo(root: Path, device: str, instances: int) -> None:
    net = torch.jit.trace(small_cnn(), torch.zeros(2, 3, 32, 32))  # type: ignore[no-untyped-call]
    variants = (("plain", ""), ("batched", f"dynamic_batching: {{max_queue_delay_us: {DELAY_US}}}\n"),
                ("batched0", "dynamic_batching: {max_queue_delay_us: 0}\n"))
    for name, batching in variants:
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.yaml").write_text(CONFIG.format(name=name, max_batch=MAX_BATCH, device=device,
                                                               instances=instances, batching=batching))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(net, str(root / name / "1" / "model.pt"))


async def load(served: ServedModel, concurrency: int, seconds: float) -> tuple[int, list[float]]:
    """C closed-loop clients for ``seconds``: requests done and their latencies (seconds)."""
    rng = np.random.default_rng(0)
    images = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(16)]
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        n = i
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await served.infer({"pixels": images[n % len(images)]})
            latencies.append(time.perf_counter() - t0)
            n += 1

    for _ in range(3):  # warm up: the first calls of a TorchScript module optimise it
        await served.infer({"pixels": images[0]})
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return len(latencies), latencies


def batch_compute_ms(model: ServedModel) -> float:
    x = np.random.default_rng(1).standard_normal((MAX_BATCH, 3, 32, 32)).astype(np.float32)
    runner = model.model.runner
    for _ in range(3):
        runner(pixels=x)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        runner(pixels=x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        build_repo(Path(tmp), args.device, args.instances)
        repo = load_repository(tmp)
        assert not repo.errors, repo.errors
        plain, batched, eager = (ServedModel(repo.get(n)) for n in ("plain", "batched", "batched0"))
        compute = batch_compute_ms(batched)
        print(f"\n## Dynamic batching: small CNN (3x32x32 → 10), {args.device}, {args.instances} instance(s), "
              f"torch threads {torch.get_num_threads()}, {args.seconds:g} s per row\n")
        print(f"max_batch_size {MAX_BATCH}; the model alone computes a batch of {MAX_BATCH} in {compute:.2f} ms\n")
        print("| concurrency | batching | req/s | p50 ms | p99 ms | mean batch | batch compute p99 ms | p99 bound ms | throughput ratio | p99 within bound |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for c in args.concurrency:
            base = 0.0
            for name, served, delay_us in (("off", plain, 0), (f"delay {DELAY_US} µs", batched, DELAY_US), ("delay 0", eager, 0)):
                before = (served.stats.batches, served.stats.rows)
                computes: list[float] = []
                if served.batcher is not None:
                    served.batcher.observer = lambda rows, wait, seconds, into=computes: into.append(seconds)
                done, lat = asyncio.run(load(served, c, args.seconds))
                batches, rows = served.stats.batches - before[0], served.stats.rows - before[1]
                batch_ms = float(np.percentile(computes, 99)) * 1e3 if computes else float("nan")
                bound = delay_us / 1e3 + batch_ms
                rate = done / args.seconds
                base = base or rate
                if served is not plain:
                    record(f"small CNN served in process, {args.device}, concurrency {c}", f"dynamic batching, {name}",
                           rate, "req/s", "the same model without batching", base, higher_is_better=True)
                p50, p99 = (float(np.percentile(lat, q)) * 1e3 for q in (50, 99))
                within = "yes" if p99 <= bound else "no"
                batched_row = served is not plain
                print(f"| {c} | {name} | {rate:.0f} | {p50:.2f} | {p99:.2f} | {rows / max(batches, 1):.1f} | {f'{batch_ms:.2f}' if batched_row else '–'} | "
                      f"{f'{bound:.2f}' if batched_row else '–'} | {rate / base:.2f} | {within if batched_row else '–'} |", flush=True)


if __name__ == "__main__":
    main()
