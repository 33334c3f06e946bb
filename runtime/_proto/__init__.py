"""KServe v2 / Triton gRPC messages for twinpipe's server (generated from ``kserve.proto``).

The messages live in the protobuf package ``twinpipe.kserve`` so they load next to tritonclient's
``inference.*``; on the wire only field numbers and method paths count, and those are Triton's.
Regenerate ``kserve_pb2.py``/``.pyi`` with ``generate.sh`` after editing ``kserve.proto``.
"""

from __future__ import annotations

from . import kserve_pb2

__all__ = ["HEALTH_SERVICE", "INFERENCE_SERVICE", "kserve_pb2"]

#: The wire names the server registers its handlers under (``/<service>/<Method>``).
INFERENCE_SERVICE = "inference.GRPCInferenceService"
HEALTH_SERVICE = "grpc.health.v1.Health"
