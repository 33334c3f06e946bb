"""A pipeline with steps placed on the GPU, served over gRPC: the same answers as its CPU twin.

The GPU steps run on the real GPU where there is one, else in Numba's CUDA simulator (the server
inherits ``NUMBA_ENABLE_CUDASIM`` from tests/conftest.py): the pre-processing uploads the decoded
batch, the model takes the GPU tensor, the softmax uploads the model's logits, and what the GPU
made goes back to the host before the server answers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import tritonclient.grpc as tg
from numba import cuda

from ._server import CLASSIFY, Server, build_repository

pytestmark = pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device and no simulator")

# the decoder stays on the CPU: on a real GPU nvJPEG would upsample chroma its own way, and this
# test compares the answers exactly
CLASSIFY_GPU = (CLASSIFY.replace("name: classify", "name: classify_gpu")
                .replace("decode: {op: image.decode,", "decode: {op: image.decode, device: cpu,")
                .replace("pre: {op: image.resize_crop_normalize,", "pre: {op: image.resize_crop_normalize, device: cuda,")
                .replace("soft: {op: classify.softmax,", "soft: {op: classify.softmax, device: cuda,"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = build_repository(tmp_path_factory.mktemp("repo"))
    (root / "classify_gpu.yaml").write_text(CLASSIFY_GPU)
    s = Server(root, "--no-http")
    yield s
    s.stop()


def test_a_pipeline_with_gpu_steps_answers_like_its_cpu_twin(server: Server) -> None:
    assert "device: cuda" in CLASSIFY_GPU and CLASSIFY_GPU.count("device: cuda") == 2
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    photos = []
    for _ in range(2):  # small JPEGs of two sizes (the simulator runs a Python thread per CUDA thread)
        img = cv2.GaussianBlur(rng.integers(0, 256, (int(rng.integers(36, 48)), int(rng.integers(36, 48)), 3), dtype=np.uint8), (5, 5), 0)
        photos.append(cv2.imencode(".jpg", img)[1].tobytes())
    batch = tg.InferInput("image", [2], "BYTES")
    batch.set_data_from_numpy(np.array(photos, dtype=object))
    with tg.InferenceServerClient(server.grpc) as client:
        want = client.infer("classify", [batch])
        got = client.infer("classify_gpu", [batch])
        np.testing.assert_array_equal(got.as_numpy("classes"), want.as_numpy("classes"))
        np.testing.assert_allclose(got.as_numpy("scores"), want.as_numpy("scores"), rtol=1e-5, atol=1e-6)
        # a bad request to the GPU pipeline is an error naming the input, and the server goes on
        bad = tg.InferInput("image", [1, 2], "FP32")
        bad.set_data_from_numpy(np.ones((1, 2), np.float32))
        with pytest.raises(tg.InferenceServerException, match=r"input 'image' has datatype BYTES \(object\); given FP32"):
            client.infer("classify_gpu", [bad])
        again = client.infer("classify_gpu", [batch])
        np.testing.assert_array_equal(again.as_numpy("classes"), want.as_numpy("classes"))

