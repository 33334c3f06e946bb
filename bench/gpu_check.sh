#!/usr/bin/env bash
# The device check of issue 10, for a machine with an NVIDIA GPU (the device tool's H100/H200):
# the CUDA kernels' tests on the real GPU (not the simulator), then the GPU benchmark, whose table
# is printed last. Under 6 minutes. Usage, from the repository root:
#
#     bash bench/gpu_check.sh            # $PYTHON picks the interpreter (default python3)
#
# twinpipe is put on the path without network access (an editable install with no dependencies:
# the machine brings torch, torchvision, numba-cuda and cupy). Exit status: the tests' (0: passed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -e /dev/nvidiactl ]; then
    echo "gpu_check: no NVIDIA driver here (/dev/nvidiactl); run it on a GPU machine" >&2
    exit 2
fi
start=$(date +%s)
"$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
    || echo "gpu_check: editable install failed; using the checkout as it is" >&2
"$PY" - <<'PY'
import numba, numpy, torch
from numba import cuda
print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}, numba {numba.__version__}, numpy {numpy.__version__}, "
      f"numba sees the GPU: {cuda.is_available()}")
PY
echo "== CUDA tests on the GPU: kernels, GPU decode, placement, GPU models in pipelines, a served GPU pipeline =="
timeout 240 "$PY" -m pytest -q -rs -p no:cacheprovider tests/ops/image/test_cuda.py tests/ops/classify/test_cuda.py \
    tests/ops/detect/test_cuda.py tests/ops/image/test_decode_gpu.py tests/dag/test_placement.py tests/e2e/test_gpu_pipeline.py \
    "tests/models/test_serving.py::test_a_gpu_model_in_a_pipeline_gives_its_outputs_on_the_gpu_to_gpu_steps" \
    "tests/models/test_serving.py::test_instances_on_a_gpu_have_their_own_streams_and_match_the_cpu" \
    "tests/runtime/test_cli.py::test_run_a_pipeline_with_a_gpu_step_prints_it_from_the_host" 2>&1 | tail -30
tests=${PIPESTATUS[0]}
echo "== GPU benchmark =="
timeout $((330 - ($(date +%s) - start))) "$PY" bench/gpu.py
echo "gpu_check: tests exit ${tests}, $(($(date +%s) - start)) s in all"
exit "$tests"
