"""The server under load, over gRPC and HTTP: ``twinpipe serve`` against the floors, driven by perf_analyzer.

Four servers' answers, measured in one run with the same load generator:

* **identity** — a TorchScript ``nn.Identity``, FP32 ``x`` [-1] → ``y`` = x, no batching; 1024 floats a request.
* **classify** — a pipeline, JPEG in, top-5 out: image.decode → image.resize_crop_normalize (size 36,
  crop 32) → a small TorchScript CNN (10 classes, built here) → classify.softmax → classify.topk k=5;
  no pipeline batching; every request is the shipped ``coffee.jpg`` (36 KB).
* **hand-written** — ``bench/_handwritten.py``: what a user writes by hand, for ``classify``: a
  bare grpc.aio server whose ModelInfer runs the same ops and CNN per request on its event loop
  (no batching, no executor); checked to answer exactly as the pipeline does.
* **the floor** — ``bench/_floor.py``: a bare grpc.aio server (same Python, grpc and messages) whose
  ModelInfer decodes the raw inputs and echoes them back as raw outputs, for ``identity`` (FP32) and
  ``classify`` (the JPEG's bytes). What any Python gRPC server pays per request; twinpipe's ratio
  to it is what twinpipe itself adds.

Over HTTP/REST (KServe v2 with the binary-data extension), ``identity`` again, with tensors sent
and answered as binary data and as JSON (``--input-tensor-format`` / ``--output-tensor-format``),
against **the HTTP floor** — ``bench/_http_floor.py``: a bare aiohttp server (the same low-level
aiohttp server, Python and json module as twinpipe's HTTP frontend) whose infer handler parses the
JSON header, takes the tensor from the binary data or JSON ``data`` and echoes it in the format
asked. Target: identity over HTTP ≥ 70% of the HTTP floor in each format and concurrency.

Each measurement is Triton's ``perf_analyzer`` (C++, closed loop, sync calls: ``concurrency``
requests in flight) for ``--seconds`` (three windows, stability check off so every one takes the
same time); it reports throughput and the client's p50/p99 latency. The two servers take turns,
``--rounds`` times per row, and a row shows the round with the median throughput (with the range
over rounds): a busy spell of the shared machine lands on both. Target: identity ≥ 70% of the
floor's throughput at each concurrency. Without a working perf_analyzer the rows come from an
in-process asyncio client (tritonclient.grpc.aio), which the table title says.

This machine has 2 cores: the server under test, perf_analyzer's threads and (idle) the other
server share them, so throughput is bound by the CPU all of them burn, and at concurrency 16 the
latencies include time waiting for a core. Compare ratios, not absolute numbers.

Run: ``.venv/bin/python bench/server.py [--seconds 4] [--rounds 3] [--concurrency 1 16] [--profile DIR]``
(``--profile`` runs both servers under cProfile, writes ``DIR/{twinpipe,floor}.prof`` and prints
their top functions; its throughputs are then cProfile's, not the servers').
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import pstats
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _results import record

from twinpipe.pipelines import asset_path

__all__ = ["Row", "build_repository", "main", "measure", "write_identity"]

PERF_ANALYZER = Path(os.environ.get("TWINPIPE_PERF_ANALYZER", Path(__file__).resolve().parents[2] / "shared" / "tools" / "perf-analyzer"))
FLOAT_COUNT = 1024
TARGET = 0.70

IDENTITY = """\
name: identity
backend: torchscript
max_batch_size: 0
inputs: {x: {datatype: FP32, shape: [-1]}}
outputs: {y: {datatype: FP32, shape: [-1]}}
"""
CNN = """\
name: cnn
backend: torchscript
max_batch_size: 8
inputs: {pixels: {datatype: FP32, shape: [3, 32, 32]}}
outputs: {logits: {datatype: FP32, shape: [10]}}
device: cpu
"""
CLASSIFY = """\
name: classify
inputs: {image: {datatype: BYTES, shape: [-1]}}
outputs:
  scores: {datatype: FP32, shape: [-1, 5], from: top.values}
  classes: {datatype: INT64, shape: [-1, 5], from: top.indices}
steps:
  decode: {op: image.decode, inputs: {data: image}, params: {color: rgb}}
  pre: {op: image.resize_crop_normalize, inputs: {image: decode.image}, params: {size: 36, crop: 32}}
  net: {model: cnn, inputs: {pixels: pre.tensor}}
  soft: {op: classify.softmax, inputs: {logits: net.logits}}
  top: {op: classify.topk, inputs: {scores: soft.probs}, params: {k: 5}}
"""

Row = tuple[float, float, float]  # requests/s, p50 ms, p99 ms


def small_cnn() -> torch.nn.Module:
    torch.manual_seed(3)
    c = torch.nn
    return c.Sequential(c.Conv2d(3, 8, 3, padding=1), c.ReLU(), c.MaxPool2d(2), c.Conv2d(8, 16, 3, padding=1), c.ReLU(),
                        c.AdaptiveAvgPool2d(1), c.Flatten(), c.Linear(16, 10)).eval()


def write_identity(root: Path) -> None:
    """The identity model folder (TorchScript ``nn.Identity``), as bench/bls.py uses it too."""
    (root / "identity" / "1").mkdir(parents=True)
    (root / "identity" / "config.yaml").write_text(IDENTITY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Identity()), str(root / "identity" / "1" / "model.pt"))


def build_repository(root: Path) -> Path:
    """The identity model, the CNN and the classify pipeline, as ``twinpipe serve`` reads them."""
    write_identity(root)
    (root / "cnn" / "1").mkdir(parents=True)
    (root / "cnn" / "config.yaml").write_text(CNN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.trace(small_cnn(), torch.zeros(1, 3, 32, 32))  # type: ignore[no-untyped-call]
        torch.jit.save(net, str(root / "cnn" / "1" / "model.pt"))
    (root / "classify.yaml").write_text(CLASSIFY)
    return root


def start(args: list[str], ready: str, profile: Path | None) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A server subprocess, once it prints its ``ready`` line (``... grpc=HOST:PORT http=...``); its addresses by kind."""
    if profile is not None:  # grpc.aio runs every handler on the main thread, which cProfile sees
        args = ["-m", "cProfile", "-o", str(profile), *args]
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        lines.append(line)
        if line.startswith(ready):
            return proc, dict(f.split("=", 1) for f in line.split() if "=" in f)
    stop(proc)
    raise RuntimeError(f"{' '.join(args)} did not start:\n{''.join(lines)}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def jpeg() -> bytes:
    return asset_path("coffee.jpg").read_bytes()


def check(url: str, floor: bool) -> None:
    """A few requests of each kind before measuring: warms the servers up and checks the answers."""
    import tritonclient.grpc as tc

    client = tc.InferenceServerClient(url)
    x = np.random.default_rng(int.from_bytes(os.urandom(4), "little")).standard_normal(FLOAT_COUNT).astype(np.float32)
    image = np.array([jpeg()], dtype=object)
    for _ in range(20):
        inp = tc.InferInput("x", [FLOAT_COUNT], "FP32")
        inp.set_data_from_numpy(x)
        out = client.infer("identity", [inp])
        assert np.array_equal(out.as_numpy("y"), x), "identity did not echo its input"
        img = tc.InferInput("image", [1], "BYTES")
        img.set_data_from_numpy(image)
        res = client.infer("classify", [img])
        if floor:
            assert res.as_numpy("image")[0] == image[0], "the floor did not echo the JPEG"
        else:
            scores = res.as_numpy("scores")
            assert scores.shape == (1, 5) and np.all(np.diff(scores[0]) <= 0), scores
    client.close()


def check_handwritten(url: str, twinpipe_url: str) -> None:
    """The hand-written server answers classify exactly as the twinpipe pipeline does."""
    import tritonclient.grpc as tc

    image = np.array([jpeg()], dtype=object)
    answers = []
    for at in (url, twinpipe_url):
        client = tc.InferenceServerClient(at)
        img = tc.InferInput("image", [1], "BYTES")
        img.set_data_from_numpy(image)
        res = client.infer("classify", [img])
        answers.append((res.as_numpy("scores"), res.as_numpy("classes")))
        client.close()
    (hs, hc), (ts, tcl) = answers
    assert np.array_equal(hs, ts) and np.array_equal(hc, tcl), "the hand-written server disagrees with the pipeline"


def perf_analyzer_works() -> bool:
    if not PERF_ANALYZER.is_file():
        return False
    try:
        probe = subprocess.run([str(PERF_ANALYZER), "--version"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and "perf analyzer" in (probe.stdout + probe.stderr).lower()


# the HTTP rows: (input format, output format, floats a request). perf_analyzer's JSON input sends
# only a tensor's first element (seen on the wire: "shape":[1024],"data":[<one value>]), so JSON
# both ways is measured on one float, and JSON on 1024 floats as the output's format only.
HTTP_FORMATS = {"binary": ("binary", "binary", FLOAT_COUNT), "JSON out": ("binary", "json", FLOAT_COUNT),
                "JSON, 1 float": ("json", "json", 1)}


def perf_analyzer(url: str, model: str, concurrency: int, seconds: float, data: Path, work: Path, fmt: str | None = None) -> Row:
    """One measurement; ``fmt``: over HTTP, one of HTTP_FORMATS."""
    out = work / f"{model}-{concurrency}-{time.monotonic_ns()}.csv"
    window_ms = max(int(seconds * 1000 / 3), 200)
    inputs = ["--shape", f"x:{FLOAT_COUNT}"] if model == "identity" else ["--input-data", str(data)]
    protocol = ["-i", "grpc"]
    if fmt is not None:
        fmt_in, fmt_out, count = HTTP_FORMATS[fmt]
        protocol = ["-i", "http", "--input-tensor-format", fmt_in, "--output-tensor-format", fmt_out]
        inputs = ["--shape", f"x:{count}"]
    # -x 1: without a version perf_analyzer looks for the one that ran in the server's statistics, and
    # the floor keeps none; -s 1000: three windows, whatever their spread
    cmd = [str(PERF_ANALYZER), "-m", model, "-x", "1", "-u", url, *protocol, *inputs,
           "--concurrency-range", f"{concurrency}:{concurrency}", "--measurement-interval", str(window_ms),
           "-s", "1000", "-f", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 10 + 120)
    if run.returncode != 0 or not out.is_file():
        raise RuntimeError(f"perf_analyzer failed ({run.returncode}): {' '.join(cmd)}\n{(run.stdout + run.stderr)[-2000:]}")
    with out.open() as f:
        row = next(csv.DictReader(f))
    return float(row["Inferences/Second"]), float(row["p50 latency"]) / 1e3, float(row["p99 latency"]) / 1e3


async def _aio_load(url: str, model: str, concurrency: int, seconds: float, fmt: str | None = None) -> Row:
    """The fallback: ``concurrency`` closed-loop asyncio clients in this process."""
    import tritonclient.grpc.aio as tca
    import tritonclient.http.aio as tha

    if fmt is not None:  # HTTP: identity only
        fmt_in, fmt_out, count = HTTP_FORMATS[fmt]
        client: Any = tha.InferenceServerClient(url)
        inp = tha.InferInput("x", [count], "FP32")
        inp.set_data_from_numpy(np.random.default_rng(0).standard_normal(count).astype(np.float32),
                                binary_data=fmt_in == "binary")
        outputs = [tha.InferRequestedOutput("y", binary_data=fmt_out == "binary")]
    elif model == "identity":
        client, outputs = tca.InferenceServerClient(url), None
        inp = tca.InferInput("x", [FLOAT_COUNT], "FP32")
        inp.set_data_from_numpy(np.random.default_rng(0).standard_normal(FLOAT_COUNT).astype(np.float32))
    else:
        client, outputs = tca.InferenceServerClient(url), None
        inp = tca.InferInput("image", [1], "BYTES")
        inp.set_data_from_numpy(np.array([jpeg()], dtype=object))
    latencies: list[float] = []
    for _ in range(20):
        await client.infer(model, [inp], outputs=outputs)
    t_end = time.perf_counter() + seconds

    async def one() -> None:
        while (t0 := time.perf_counter()) < t_end:
            await client.infer(model, [inp], outputs=outputs)
            latencies.append(time.perf_counter() - t0)

    start_t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    took = time.perf_counter() - start_t
    await client.close()
    p50, p99 = (float(np.percentile(latencies, q)) * 1e3 for q in (50, 99))
    return len(latencies) / took, p50, p99


def measure(url: str, model: str, concurrency: int, seconds: float, data: Path, work: Path, use_pa: bool,
            fmt: str | None = None) -> Row:
    if use_pa:
        return perf_analyzer(url, model, concurrency, seconds, data, work, fmt)
    return asyncio.run(_aio_load(url, model, concurrency, seconds, fmt))


def check_http(url: str) -> None:
    """Warm-up requests over HTTP, binary and JSON, each answer checked."""
    import tritonclient.http as th

    client = th.InferenceServerClient(url)
    x = np.random.default_rng(int.from_bytes(os.urandom(4), "little")).standard_normal(FLOAT_COUNT).astype(np.float32)
    for k in range(20):
        inp = th.InferInput("x", [FLOAT_COUNT], "FP32")
        inp.set_data_from_numpy(x, binary_data=k % 2 == 0)
        out = client.infer("identity", [inp], outputs=[th.InferRequestedOutput("y", binary_data=k % 2 == 1)])
        assert np.array_equal(out.as_numpy("y"), x), "identity did not echo its input over HTTP"
    client.close()


def http_rows(url: str, floor_url: str, args: argparse.Namespace, work: Path, use_pa: bool, grpc_rates: dict[int, float]) -> dict[str, float]:
    """The HTTP rows: identity in binary and JSON against the HTTP floor; returns the ratios."""
    print(f"\n## HTTP/REST: twinpipe vs a bare aiohttp echo server (the HTTP floor); identity, FP32 ({FLOAT_COUNT} floats "
          "unless the row says 1: perf_analyzer's JSON input sends only a tensor's first element); "
          f"load: {'perf_analyzer -i http' if use_pa else 'FALLBACK: tritonclient.http.aio in process'}\n")
    print("| target | tensors | concurrency | req/s (range over rounds) | p50 ms | p99 ms | ratio to the HTTP floor | ratio to twinpipe gRPC |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ratios: dict[str, float] = {}
    for fmt in HTTP_FORMATS:
        for c in args.concurrency:
            runs: dict[str, list[Row]] = {"floor": [], "twinpipe": []}
            for _ in range(args.rounds):
                for who, at in (("floor", floor_url), ("twinpipe", url)):
                    runs[who].append(measure(at, "identity", c, args.seconds, work, work, use_pa, fmt))
            base = _median(runs["floor"])[0]
            for who in ("floor", "twinpipe"):
                rate, p50, p99 = _median(runs[who])
                spread = f"{min(r[0] for r in runs[who]):.0f}–{max(r[0] for r in runs[who]):.0f}"
                vs_grpc = f"{rate / grpc_rates[c]:.2f}" if who == "twinpipe" and grpc_rates.get(c) else ""
                name = "HTTP floor: identity echo (aiohttp)" if who == "floor" else "twinpipe: identity over HTTP"
                print(f"| {name} | {fmt} | {c} | {rate:.0f} ({spread}) | {p50:.2f} | {p99:.2f} | {rate / base:.2f} | {vs_grpc} |", flush=True)
            rate = _median(runs["twinpipe"])[0]
            task = f"HTTP identity, tensors {fmt}, concurrency {c} ({'perf_analyzer' if use_pa else 'aio client'})"
            record(task, "twinpipe serve: identity (TorchScript, 1024 FP32) over HTTP", rate, "req/s",
                   "HTTP floor: bare aiohttp identity echo", base, higher_is_better=True)
            ratios[f"{fmt} at {c}"] = rate / base
    return ratios


def _median(rows: list[Row]) -> Row:
    """The row of the round with the median throughput."""
    return sorted(rows)[len(rows) // 2]


def show_profile(path: Path, title: str, top: int = 18) -> None:
    print(f"\n### cProfile: {title} (top {top} by own time)\n\n```")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    print("```")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measuring time per round (default 4)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--rounds", type=int, default=3, help="turns each server takes per row; the median counts (default 3)")
    ap.add_argument("--profile", type=Path, help="run both servers under cProfile; write DIR/{twinpipe,floor}.prof")
    args = ap.parse_args()
    use_pa = perf_analyzer_works()
    prof: Path | None = args.profile
    if prof is not None:
        prof.mkdir(parents=True, exist_ok=True)
    http_ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = build_repository(work / "repo")
        photo = jpeg()
        data = work / "classify.json"  # perf_analyzer sends b64 BYTES as given: already length-prefixed
        data.write_text(json.dumps({"data": [{"image": {"b64": base64.b64encode(struct.pack("<I", len(photo)) + photo).decode(),
                                                        "shape": [1]}}]}))
        serve_args = ["-m", "twinpipe.runtime.cli", "serve", "--repository", str(repo), "--host", "127.0.0.1",
                      "--http-port", "0", "--grpc-port", "0", "--metrics-port", "-1"]
        ours, ours_at = start(serve_args, "twinpipe: listening ", prof / "twinpipe.prof" if prof else None)
        url, http_url = ours_at["grpc"], ours_at["http"]
        try:
            floor, floor_at = start([str(Path(__file__).with_name("_floor.py"))], "floor: listening ",
                                    prof / "floor.prof" if prof else None)
            hand, hand_at = start([str(Path(__file__).with_name("_handwritten.py")), "--model", str(repo / "cnn" / "1" / "model.pt")],
                                  "handwritten: listening ", None)
            http_floor, http_floor_at = start([str(Path(__file__).with_name("_http_floor.py"))], "http-floor: listening ", None)
            floor_url, hand_url = floor_at["grpc"], hand_at["grpc"]
            try:
                check(url, floor=False)
                check(floor_url, floor=True)
                check_handwritten(hand_url, url)
                tool = "perf_analyzer (C++, sync, closed loop)" if use_pa else \
                    "FALLBACK: in-process asyncio client (tritonclient.grpc.aio), perf_analyzer not runnable"
                print(f"\n## gRPC server: twinpipe vs a bare grpc.aio echo server (the floor) and a hand-written classify "
                      f"server; load: {tool}; {args.rounds} rounds of {args.seconds:g} s per row, {os.cpu_count()} cores shared "
                      "by server and client" + (" — UNDER cProfile" if prof else "") + "\n")
                print("| target | concurrency | req/s (range over rounds) | p50 ms | p99 ms | ratio to the floor | ratio to hand-written |")
                print("|---|---:|---:|---:|---:|---:|---:|")
                ratios: dict[int, float] = {}
                grpc_rates: dict[int, float] = {}
                for model, label in (("identity", "identity (TorchScript, 1024 FP32)"),
                                     ("classify", "classify pipeline (JPEG → top-5)")):
                    servers = [("floor", floor_url), ("twinpipe", url)] + ([("hand", hand_url)] if model == "classify" else [])
                    for c in args.concurrency:
                        # the servers take turns, round after round: a slow spell of this shared
                        # machine lands on all; each row is the round with the median throughput
                        runs: dict[str, list[Row]] = {who: [] for who, _ in servers}
                        for _ in range(args.rounds):
                            for who, at in servers:
                                runs[who].append(measure(at, model, c, args.seconds, data, work, use_pa))
                        base = _median(runs["floor"])[0]
                        hand_rate = _median(runs["hand"])[0] if "hand" in runs else 0.0
                        for who in ("floor", "hand", "twinpipe"):
                            if who not in runs:
                                continue
                            rate, p50, p99 = _median(runs[who])
                            name = {"floor": f"floor: {model} echo", "twinpipe": f"twinpipe: {label}",
                                    "hand": "hand-written grpc.aio: the same ops and CNN per request"}[who]
                            spread = f"{min(r[0] for r in runs[who]):.0f}–{max(r[0] for r in runs[who]):.0f}"
                            vs_hand = f"{rate / hand_rate:.2f}" if hand_rate and who != "floor" else ""
                            print(f"| {name} | {c} | {rate:.0f} ({spread}) | {p50:.2f} | {p99:.2f} | {rate / base:.2f} | {vs_hand} |",
                                  flush=True)
                            if who != "twinpipe":
                                continue
                            task = f"gRPC {model}, concurrency {c} ({'perf_analyzer' if use_pa else 'aio client'})"
                            record(task, f"twinpipe serve: {label}", rate, "req/s", f"floor: bare grpc.aio {model} echo",
                                   base, higher_is_better=True)
                            if hand_rate:
                                record(task, f"twinpipe serve: {label}", rate, "req/s",
                                       "hand-written grpc.aio server, same ops and CNN per request", hand_rate,
                                       higher_is_better=True)
                            if model == "identity":
                                ratios[c] = rate / base
                                grpc_rates[c] = rate
                if not prof:  # (the HTTP rows are not profiled)
                    check_http(http_url)
                    check_http(http_floor_at["http"])
                    http_ratios = http_rows(http_url, http_floor_at["http"], args, work, use_pa, grpc_rates)
            finally:
                stop(floor)
                stop(hand)
                stop(http_floor)
        finally:
            stop(ours)
    met = all(r >= TARGET for r in ratios.values())
    detail = ", ".join(f"{r:.0%} at {c}" for c, r in ratios.items())
    print(f"\nidentity ≥ {TARGET:.0%} of the floor's throughput at each concurrency: {'yes' if met else 'no'} ({detail})")
    if http_ratios:
        met = all(r >= TARGET for r in http_ratios.values())
        detail = ", ".join(f"{r:.0%} {k}" for k, r in http_ratios.items())
        print(f"identity over HTTP ≥ {TARGET:.0%} of the HTTP floor's throughput: {'yes' if met else 'no'} ({detail})")
    if prof is not None:
        show_profile(prof / "twinpipe.prof", "twinpipe serve (main thread)")
        show_profile(prof / "floor.prof", "the floor (main thread)")


if __name__ == "__main__":
    main()
