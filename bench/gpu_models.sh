#!/usr/bin/env bash
# The device check for models and the runtime: the models tests and the Engine/metrics tests (the
# CUDA ones run, not skip), then bench/batching.py on the GPU with 1 and 2 instances, plus the
# CPU rows on the same machine. Run on a GPU machine from the repository root, with wheels of
# twinpipe and of what the machine lacks (simplejpeg) in .whl/. Logs go to $OUT.
# Set ONLY_TESTS=1 to skip the benchmark.
set -u
OUT=${OUT:-/tmp/twinpipe-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
nvidia-smi -L
python3 -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ort', o.__version__)"
cd tests && timeout 240 python3 -m pytest -q -p no:cacheprovider -rs models runtime/test_engine.py runtime/test_metrics.py 2>&1 | tee "$OUT/tests.log" | tail -15; cd ..
[ "${ONLY_TESTS:-0}" = 1 ] && exit 0
for args in "--device cuda" "--device cuda --instances 2" "--device cpu --threads 4"; do
  timeout 100 python3 bench/batching.py --seconds 3 $args 2>&1 | grep -v Warning | grep -v warnings.warn | tee -a "$OUT/bench.log"
done
