"""Start ``twinpipe serve`` as a subprocess on free loopback ports, and build test repositories."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BF16", "BYTES")

PYTHON_MODELS = {
    # an echo per datatype: the output is the input
    **{f"echo_{dt.lower()}": (f"max_batch_size: 8\ninputs: {{x: {{datatype: {dt}, shape: [-1]}}}}\n"
                              f"outputs: {{y: {{datatype: {dt}, shape: [-1]}}}}\n",
                              "def build():\n    return lambda x: x\n") for dt in DATATYPES},
    "slow": ("max_batch_size: 1\ninputs: {x: {datatype: INT32, shape: [1]}}\noutputs: {y: {datatype: INT32, shape: [1]}}\n"
             "dynamic_batching: {max_queue_size: 2}\n",
             "import time\ndef build():\n    def run(x):\n        time.sleep(float(x.reshape(-1)[0]) / 1000)\n        return x + 1\n    return run\n"),
    "boom": ("max_batch_size: 4\ninputs: {x: {datatype: FP32, shape: [1]}}\noutputs: {y: {datatype: FP32, shape: [1]}}\n",
             "def build():\n    def run(x):\n        if (x < 0).any():\n            raise ValueError('negative input')\n        return x\n    return run\n"),
    "acc": ("max_batch_size: 4\ninputs: {x: {datatype: FP32, shape: [2]}}\noutputs: {y: {datatype: FP32, shape: [2]}}\n"
            "sequence_batching:\n  state: {h: {input: h_in, output: h_out, datatype: FP32, shape: [2], initial: 1}}\n",
            "def build():\n    return lambda x, h: (x + h, x + h)\n"),
}

# a decoupled model: n → the responses 1..|n|; a negative n fails after two responses
COUNT_MODEL = ("decoupled: true\ninputs: {n: {datatype: INT32, shape: [1]}}\noutputs: {k: {datatype: INT32, shape: [1]}}\n", """\
import numpy as np
def build():
    def run(n):
        n = int(n.reshape(-1)[0])
        for k in range(abs(n)):
            if n < 0 and k == 2:
                raise ValueError("cannot count below zero")
            yield {"k": np.array([k + 1], np.int32)}
    return run
""")

CNN_CONFIG = """\
name: cnn
backend: torchscript
max_batch_size: 16
inputs: {pixels: {datatype: FP32, shape: [3, 32, 32]}}
outputs: {logits: {datatype: FP32, shape: [10]}}
device: cpu
instances: {count: 2}
dynamic_batching: {max_queue_delay_us: 2000, preferred_batch_sizes: [8, 16]}
"""

# JPEG in, top-3 out: decode → the fused resize/crop/normalise → the CNN → softmax → top-k
CLASSIFY = """\
name: classify
inputs: {image: {datatype: BYTES, shape: [-1]}}
outputs:
  scores: {datatype: FP32, shape: [-1, 3], from: top.values}
  classes: {datatype: INT64, shape: [-1, 3], from: top.indices}
batching: {max_batch_size: 8, max_queue_delay_us: 1000}
steps:
  decode: {op: image.decode, inputs: {data: image}, params: {color: rgb}}
  pre: {op: image.resize_crop_normalize, inputs: {image: decode.image}, params: {size: 36, crop: 32}}
  net: {model: cnn, inputs: {pixels: pre.tensor}}
  soft: {op: classify.softmax, inputs: {logits: net.logits}}
  top: {op: classify.topk, inputs: {scores: soft.probs}, params: {k: 3}}
"""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_perf_analyzer() -> Path:
    """The perf_analyzer wrapper: $TWINPIPE_PERF_ANALYZER, else ``shared/tools/perf-analyzer`` beside
    the checkout or one of its parents (a clean clone may live elsewhere), else the workplace's."""
    if "TWINPIPE_PERF_ANALYZER" in os.environ:
        return Path(os.environ["TWINPIPE_PERF_ANALYZER"])
    for folder in ROOT.parents:
        candidate = folder / "shared" / "tools" / "perf-analyzer"
        if candidate.is_file():
            return candidate
    return Path("/work/shared/tools/perf-analyzer")


def small_cnn() -> torch.nn.Module:
    torch.manual_seed(3)
    c = torch.nn
    return c.Sequential(c.Conv2d(3, 8, 3, padding=1), c.ReLU(), c.MaxPool2d(2), c.Conv2d(8, 16, 3, padding=1), c.ReLU(),
                        c.AdaptiveAvgPool2d(1), c.Flatten(), c.Linear(16, 10)).eval()


def write_python_models(root: Path, models: dict[str, tuple[str, str]]) -> Path:
    """Python-backend model folders in ``root``: name → (the config after name/backend/factory, m.py's code)."""
    for name, (config, code) in models.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.yaml").write_text(f"name: {name}\nbackend: python\nfactory: m:build\n{config}")
        (root / name / "1" / "m.py").write_text(code)
    return root


def build_repository(root: Path) -> Path:
    write_python_models(root, PYTHON_MODELS)
    (root / "cnn" / "1").mkdir(parents=True)
    (root / "cnn" / "config.yaml").write_text(CNN_CONFIG)
    torch.jit.save(torch.jit.trace(small_cnn(), torch.zeros(1, 3, 32, 32)), str(root / "cnn" / "1" / "model.pt"))  # type: ignore[no-untyped-call]
    (root / "classify.yaml").write_text(CLASSIFY)
    return root


def load_example(file: Path, name: str) -> ModuleType:
    """An example's script as a module named ``name`` (each example has its own client.py)."""
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Server:
    """``twinpipe serve`` in a subprocess; ``http``, ``grpc`` and ``metrics`` are ``host:port`` once
    ready (``http`` or ``grpc`` is "" when that frontend is off)."""

    def __init__(self, repository: Path | None, *extra: str) -> None:
        args = [sys.executable, "-m", "twinpipe.runtime.cli", "serve", "--host", "127.0.0.1", "--http-port", "0",
                "--grpc-port", "0", "--metrics-port", "0", *extra]
        if repository is not None:
            args += ["--repository", str(repository)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            if not line:
                break
            self.lines.append(line)
            if line.startswith("twinpipe: listening "):
                fields = dict(part.split("=", 1) for part in line.split()[2:])
                self.http = fields.get("http", "")
                self.grpc = fields.get("grpc", "")
                self.metrics = fields["metrics"]
                return
        self.stop()
        raise RuntimeError("twinpipe serve did not start:\n" + "".join(self.lines))

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, "".join(self.lines) + (out or "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def assert_sigterm_lets_it_finish(server: Server, call: Callable[[], Any], answer: Any) -> None:
    """SIGTERM while ``call`` (a slow request, in a thread) is in flight: it still gets ``answer``,
    and the server exits 0 saying it stopped."""
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(call())
        except Exception as e:  # the assertion below shows it
            results.append(e)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    server.signal()
    t.join(30)
    code, log = server.wait()
    assert code == 0, log
    assert len(results) == 1 and not isinstance(results[0], Exception), results
    assert np.array_equal(results[0], answer), results
    assert "twinpipe: stopped" in log


def queue_full_then_deadline(infer: Callable[[int, int | None], Any]) -> tuple[Any, Any, list[Any]]:
    """Drive the ``slow`` model (one at a time, ``max_queue_size: 2``) into its two refusals:
    a 1.5 s request runs, two wait, a fourth is refused at once (queue full); then, behind a 1 s
    request, one with a 50 ms timeout waits past it (deadline). ``infer(ms, timeout_us)`` makes one
    request from its own client and returns its result or the exception it raised. Returns (the
    queue-full answer, the deadline answer, the answers of the three that ran)."""
    results: dict[int, Any] = {}

    def call(k: int, ms: int, timeout_us: int | None = None) -> None:
        results[k] = infer(ms, timeout_us)

    busy = threading.Thread(target=call, args=(0, 1500))
    busy.start()
    time.sleep(0.3)
    waiting = [threading.Thread(target=call, args=(k, 10)) for k in (1, 2)]
    for t in waiting:
        t.start()
    time.sleep(0.3)
    call(3, 10)  # the queue holds 2: refused at once
    busy.join()
    for t in waiting:
        t.join()
    busy = threading.Thread(target=call, args=(5, 1000))
    busy.start()
    time.sleep(0.3)
    call(4, 10, 50_000)
    busy.join()
    return results[3], results[4], [results[k] for k in (0, 1, 2)]
