"""The shipped default repository served as a new user first sees it: ``twinpipe serve`` with no
repository, ``examples/client.py`` classifying the shipped photos, and Triton's ``perf_analyzer``
measuring a model and a pipeline against it."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg

from twinpipe.pipelines import asset_path

from ._server import Server, find_perf_analyzer, free_port, load_example

ROOT = Path(__file__).resolve().parents[2]


PERF_ANALYZER = find_perf_analyzer()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server(None)
    yield s
    s.stop()


def test_the_default_repository_serves_its_pipelines_and_model(server: Server) -> None:
    assert any(line.startswith("twinpipe: listening http=") and " grpc=" in line for line in server.lines)
    assert any("python examples/client.py --url" in line for line in server.lines)  # a ready-to-paste client command


def test_the_shipped_classifier_is_right_on_fresh_shapes_over_grpc(server: Server) -> None:
    """The trained shapes_net through the classify pipeline: ≥ 90% of 200 images never seen."""
    seed = int.from_bytes(os.urandom(4), "little")
    shapes = load_example(ROOT / "examples" / "shapes" / "shapes.py", "shapes_for_default_server")
    images, truth = shapes.make_dataset(200, seed)
    client = tg.InferenceServerClient(server.grpc)
    right = 0
    for k in range(0, 200, 25):
        batch = np.array(images[k:k + 25], dtype=object)
        inp = tg.InferInput("image", [len(batch)], "BYTES")
        inp.set_data_from_numpy(batch)
        labels = client.infer("classify", [inp]).as_numpy("labels")
        right += sum(row[0].decode() == shapes.CLASSES[t] for row, t in zip(labels, truth[k:k + 25]))
    client.close()
    assert right / 200 >= 0.90, f"seed {seed}: {right} of 200 right"


def test_the_example_client_names_fresh_shapes(server: Server) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "client.py"), "--url", server.grpc, "--count", "12"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 12
    right = sum(line.split(" (a ", 1)[1].split(")", 1)[0] == line.split(": ", 1)[1].split(" (", 1)[0] for line in lines)
    assert right >= 9, out.stdout  # each line: the true shape, then the predicted ones best first


def test_the_example_client_classifies_the_shipped_photos(server: Server) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "client.py"), "--url", server.grpc, "--model", "classify_color"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
    assert set(lines) == {"coffee.jpg", "chelsea.jpg", "astronaut.png"}
    assert lines["coffee.jpg"].startswith("brown (")  # its average colour; see tests/pipelines/test_classify_color.py


def _perf_analyzer(*args: str) -> subprocess.CompletedProcess[str]:
    if not PERF_ANALYZER.is_file():
        pytest.skip(f"perf_analyzer wrapper not found at {PERF_ANALYZER}")
    probe = subprocess.run([str(PERF_ANALYZER), "--help"], capture_output=True, text=True, timeout=600)
    if "Usage" not in probe.stdout + probe.stderr and "usage" not in probe.stdout + probe.stderr:
        pytest.skip(f"perf_analyzer could not be installed here: {(probe.stderr or probe.stdout)[-500:]}")
    # stability off (-s 1000): on a loaded machine the windows differ, and throughput is not what is tested
    return subprocess.run([str(PERF_ANALYZER), *args, "-s", "1000"], capture_output=True, text=True, timeout=300)


def _check(run: subprocess.CompletedProcess[str]) -> None:
    text = run.stdout + run.stderr
    assert run.returncode == 0, text
    assert "Throughput:" in text and "error" not in text.lower(), text


def test_perf_analyzer_measures_a_model(server: Server) -> None:
    _check(_perf_analyzer("-m", "color_net", "-u", server.grpc, "-i", "grpc", "-b", "2", "--concurrency-range", "1:4:3",
                          "--measurement-interval", "1000"))


def test_perf_analyzer_measures_a_pipeline_on_a_real_jpeg(server: Server, tmp_path: Path) -> None:
    photo = asset_path("coffee.jpg").read_bytes()
    # perf_analyzer sends "b64" BYTES data as it is: already serialized (length-prefixed)
    jpeg = base64.b64encode(struct.pack("<I", len(photo)) + photo).decode()
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"data": [{"image": {"b64": jpeg, "shape": [1]}}]}))  # one JPEG per batch row
    _check(_perf_analyzer("-m", "classify_color", "-u", server.grpc, "-i", "grpc", "--input-data", str(data),
                          "-b", "2", "--concurrency-range", "1:2", "--measurement-interval", "1000"))


def test_the_default_ports_come_from_the_environment_when_set(tmp_path: Path) -> None:
    """``make run`` takes no flags: $TWINPIPE_HTTP_PORT / $TWINPIPE_GRPC_PORT / $TWINPIPE_METRICS_PORT
    move the server, and the shipped client follows $TWINPIPE_GRPC_PORT; a bad value is an error
    naming the variable."""
    ports = [free_port(), free_port(), free_port()]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TWINPIPE_GRPC_PORT": str(ports[0]), "TWINPIPE_METRICS_PORT": str(ports[1]),
           "TWINPIPE_HTTP_PORT": str(ports[2])}
    proc = subprocess.Popen([sys.executable, "-m", "twinpipe.runtime.cli", "serve", "--host", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("twinpipe: listening"):
                break
        assert lines and lines[-1].strip() == (f"twinpipe: listening http=127.0.0.1:{ports[2]} grpc=127.0.0.1:{ports[0]} "
                                               f"metrics=http://127.0.0.1:{ports[1]}/metrics"), lines
        out = subprocess.run([sys.executable, str(ROOT / "examples" / "client.py"), "--count", "2"], capture_output=True,
                             text=True, env=env, timeout=120)
        assert out.returncode == 0 and out.stdout.count("shape ") == 2, out.stdout + out.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    bad = subprocess.run([sys.executable, "-m", "twinpipe.runtime.cli", "serve"], capture_output=True, text=True,
                         env={**env, "TWINPIPE_GRPC_PORT": "eighty"}, timeout=120)
    assert bad.returncode != 0 and "$TWINPIPE_GRPC_PORT must be a port number, got 'eighty'" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "twinpipe.runtime.cli", "serve"], capture_output=True, text=True,
                         env={**env, "TWINPIPE_HTTP_PORT": "x"}, timeout=120)
    assert bad.returncode != 0 and "$TWINPIPE_HTTP_PORT must be a port number, got 'x'" in bad.stderr



def test_a_port_in_use_is_a_message_not_a_traceback() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flag in ("--http-port", "--grpc-port", "--metrics-port"):
            others = [x for f in ("--http-port", "--grpc-port", "--metrics-port") if f != flag for x in (f, "0")]
            run = subprocess.run([sys.executable, "-m", "twinpipe.runtime.cli", "serve", "--host", "127.0.0.1", flag, str(port),
                                  *others], capture_output=True, text=True, timeout=120)
            assert run.returncode == 1, run.stderr
            assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr
            assert str(port) in run.stderr and ": :" not in run.stderr, run.stderr
