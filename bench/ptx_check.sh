#!/usr/bin/env bash
# Compile every CUDA kernel to PTX for a real GPU, without one: the CUDA tests run in Numba's
# simulator while bench/ptx/record.py notes each launch's argument types, then bench/ptx/compile.py
# compiles each (kernel, types) with NVVM (from the nvidia-cuda-nvcc-cu12 wheel, downloaded once into
# $PTX_CACHE) — catching what the simulator cannot (typing and code generation for the device).
# Usage, from the repository root:  bash bench/ptx_check.sh [--cc 9.0]   ($PYTHON: the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CACHE=${PTX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twinpipe-ptx}
if [ ! -e "$CACHE/nvcc/nvidia/cuda_nvcc/nvvm/lib64/libnvvm.so" ]; then
    mkdir -p "$CACHE/wheel" "$CACHE/nvcc"
    "$PY" -m pip download -q --no-deps -d "$CACHE/wheel" "nvidia-cuda-nvcc-cu12>=12.4"
    "$PY" -m zipfile -e "$CACHE"/wheel/nvidia_cuda_nvcc_cu12-*.whl "$CACHE/nvcc"
fi
record=$(mktemp -d)/launches
PYTHONPATH=bench/ptx PTX_RECORD="$record" NUMBA_ENABLE_CUDASIM=1 "$PY" -m pytest -q -p no:cacheprovider -p record \
    tests/ops/image/test_cuda.py tests/ops/classify/test_cuda.py tests/ops/detect/test_cuda.py \
    tests/ops/image/test_decode_gpu.py tests/dag/test_placement.py | tail -1
CUDA_HOME="$CACHE/nvcc/nvidia/cuda_nvcc" "$PY" bench/ptx/compile.py "$record" "$@"
