#!/usr/bin/env bash
# Regenerate kserve_pb2.py and kserve_pb2.pyi from kserve.proto (the generated files are committed).
#
# Uses grpcio-tools 1.81.1, installed outside the project venv: newer grpcio-tools emit code that
# needs a newer protobuf runtime than the protobuf 6 twinpipe pins. Messages only, no grpc stubs:
# the server registers its handlers by wire path with a generic handler.
#
# The .proto is compiled as twinpipe/runtime/_proto/kserve.proto so that the descriptor's file name
# is unique in protobuf's default pool and the generated classes' module is the import path.
#
# Usage (from anywhere): runtime/_proto/generate.sh   [PYTHON=... GRPC_TOOLS=...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
tools="${GRPC_TOOLS:-/tmp/grpcio-tools-1.81.1}"

if ! PYTHONPATH="$tools" "$python" -c 'import grpc_tools, importlib.metadata as m; assert m.version("grpcio-tools") == "1.81.1"' 2>/dev/null; then
    "$python" -m pip install --quiet --target "$tools" grpcio-tools==1.81.1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/twinpipe/runtime/_proto"
cp "$here/kserve.proto" "$work/twinpipe/runtime/_proto/kserve.proto"
(cd "$work" && PYTHONPATH="$tools" "$python" -m grpc_tools.protoc -I . \
    --python_out=. --pyi_out=. twinpipe/runtime/_proto/kserve.proto)
cp "$work/twinpipe/runtime/_proto/kserve_pb2.py" "$work/twinpipe/runtime/_proto/kserve_pb2.pyi" "$here/"
echo "generated $here/kserve_pb2.py and kserve_pb2.pyi"
