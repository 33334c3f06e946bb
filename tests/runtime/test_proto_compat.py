"""Our KServe messages are wire-identical to tritonclient's (``inference.*``): bytes parse both ways."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as tc
from google.protobuf import unknown_fields
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from tritonclient.grpc import _utils as tc_utils
from tritonclient.grpc import model_config_pb2 as tmc
from tritonclient.grpc import service_pb2 as tsv

from twinpipe.runtime._proto import HEALTH_SERVICE, INFERENCE_SERVICE
from twinpipe.runtime._proto import kserve_pb2 as kp

HEALTH = {"HealthCheckRequest", "HealthCheckResponse"}


def _rng() -> random.Random:
    return random.Random(int.from_bytes(os.urandom(4), "little"))


def _triton(name: str) -> Descriptor:
    """Triton's message with our message's name (the dotted path inside the package)."""
    top, *nested = name.split(".")
    pool = dict(tsv.DESCRIPTOR.message_types_by_name) | dict(tmc.DESCRIPTOR.message_types_by_name)
    d = pool[top]
    for part in nested:
        d = d.nested_types_by_name[part]
    return d


def _rel(full_name: str) -> str:
    return full_name.split(".", 2)[-1] if full_name.startswith("twinpipe.") else full_name.split(".", 1)[-1]


def _all_messages(d: Descriptor) -> list[Descriptor]:
    return [d, *(m for n in d.nested_types for m in _all_messages(n))]


def _is_repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def test_every_field_has_tritons_number_type_and_shape() -> None:
    checked = 0
    for top in kp.DESCRIPTOR.message_types_by_name.values():
        if top.name in HEALTH:
            continue
        for ours in _all_messages(top):
            theirs = _triton(_rel(ours.full_name))
            assert ours.GetOptions().map_entry == theirs.GetOptions().map_entry, ours.full_name
            for f in ours.fields:
                t = theirs.fields_by_name.get(f.name)
                assert t is not None, f"{ours.full_name}.{f.name} is not in Triton's {theirs.full_name}"
                where = f"{ours.full_name}.{f.name}"
                assert (f.number, f.type, _is_repeated(f)) == (t.number, t.type, _is_repeated(t)), where
                assert (f.containing_oneof and f.containing_oneof.name) == (t.containing_oneof and t.containing_oneof.name), where
                if f.message_type is not None:
                    assert _rel(f.message_type.full_name) == _rel(t.message_type.full_name), where
                if f.enum_type is not None:
                    assert _rel(f.enum_type.full_name) == _rel(t.enum_type.full_name), where
                    assert {v.name: v.number for v in f.enum_type.values} == {v.name: v.number for v in t.enum_type.values}, where
                checked += 1
    assert checked > 200
    assert {v.name: v.number for v in kp.DataType.DESCRIPTOR.values} == {v.name: v.number for v in tmc.DataType.DESCRIPTOR.values}


def test_service_methods_match_tritons() -> None:
    ours = kp.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = tsv.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert theirs.full_name == INFERENCE_SERVICE
    for m in ours.methods:
        t = theirs.methods_by_name[m.name]
        assert (_rel(m.input_type.full_name), _rel(m.output_type.full_name)) == (_rel(t.input_type.full_name), _rel(t.output_type.full_name))
        assert (m.client_streaming, m.server_streaming) == (t.client_streaming, t.server_streaming)
    health = kp.DESCRIPTOR.services_by_name["Health"]
    assert HEALTH_SERVICE == "grpc.health.v1.Health"
    assert [(m.name, m.server_streaming) for m in health.methods] == [("Check", False), ("Watch", True)]


def test_health_messages_are_grpc_health_v1_on_the_wire() -> None:
    # grpc's health.proto: HealthCheckRequest{string service = 1}, HealthCheckResponse{ServingStatus status = 1}
    assert kp.HealthCheckRequest(service="m").SerializeToString() == b"\x0a\x01m"
    assert kp.HealthCheckResponse(status=kp.HealthCheckResponse.SERVING).SerializeToString() == b"\x08\x01"
    values = {v.name: v.number for v in kp.HealthCheckResponse.ServingStatus.DESCRIPTOR.values}
    assert values == {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3}
    assert kp.HealthCheckResponse.FromString(b"\x08\x02").status == kp.HealthCheckResponse.NOT_SERVING


def test_both_packages_load_in_one_fresh_process() -> None:
    code = (
        "import tritonclient.grpc, tritonclient.grpc.model_config_pb2 as m\n"
        "from twinpipe.runtime._proto import kserve_pb2 as k\n"
        "import tritonclient.grpc.service_pb2 as s\n"
        "assert k.ModelInferRequest.DESCRIPTOR.full_name == 'twinpipe.kserve.ModelInferRequest'\n"
        "assert s.ModelInferRequest.DESCRIPTOR.full_name == 'inference.ModelInferRequest'\n"
        "assert k.ModelConfig.DESCRIPTOR.full_name != m.ModelConfig.DESCRIPTOR.full_name\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _assert_same(a: Any, b: Any, path: str = "") -> None:
    """Field by field: the same fields set (by name and number), the same values, recursively."""
    fa = {f.name: (f, v) for f, v in a.ListFields()}
    fb = {f.name: (f, v) for f, v in b.ListFields()}
    assert sorted(fa) == sorted(fb), f"{path}: fields {sorted(fa)} vs {sorted(fb)}"
    assert len(unknown_fields.UnknownFieldSet(a)) == 0 == len(unknown_fields.UnknownFieldSet(b)), path
    for name, (f, va) in fa.items():
        g, vb = fb[name]
        where = f"{path}.{name}"
        assert f.number == g.number, where
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            assert sorted(va) == sorted(vb), where
            value = f.message_type.fields_by_name["value"]
            for k in va:
                if value.message_type is not None:
                    _assert_same(va[k], vb[k], f"{where}[{k!r}]")
                else:
                    assert va[k] == vb[k], f"{where}[{k!r}]"
        elif f.message_type is not None and _is_repeated(f):
            assert len(va) == len(vb), where
            for i, (x, y) in enumerate(zip(va, vb)):
                _assert_same(x, y, f"{where}[{i}]")
        elif f.message_type is not None:
            _assert_same(va, vb, where)
        elif _is_repeated(f):
            assert list(va) == list(vb), where
        else:
            assert va == vb, where


def _cross(src: Any, dst_cls: Any) -> Any:
    dst = dst_cls.FromString(src.SerializeToString())
    _assert_same(dst, src, dst_cls.DESCRIPTOR.name)
    return dst


def test_tritonclient_infer_request_parses_field_by_field() -> None:
    rng = _rng()
    image = np.random.default_rng(rng.getrandbits(32)).random((2, 3, 4), dtype=np.float32) + 0.5
    text = np.array([b"alpha", "\u00e9t\u00e9".encode(), b""], dtype=object)
    a = tc.InferInput("image", list(image.shape), "FP32").set_data_from_numpy(image)
    b = tc.InferInput("text", [3], "BYTES").set_data_from_numpy(text)
    outs = [tc.InferRequestedOutput("scores", class_count=3), tc.InferRequestedOutput("boxes")]
    seq = rng.randrange(1, 2**62)
    req = tc_utils._get_inference_request(
        "detector", [a, b], "2", "req-7", outs, seq, True, False, rng.randrange(1, 99), rng.randrange(1, 10**6),
        {"note": "hi", "flag": True, "count": -rng.randrange(1, 100), "ratio": rng.random()},
    )
    req.parameters["big"].uint64_param = 2**64 - rng.randrange(1, 100)
    req.inputs[0].parameters["tag"].string_param = "x"
    ours = _cross(req, kp.ModelInferRequest)
    assert ours.model_name == "detector" and ours.model_version == "2" and ours.id == "req-7"
    assert ours.parameters["sequence_id"].int64_param == seq and ours.parameters["sequence_start"].bool_param
    assert ours.parameters["big"].uint64_param == req.parameters["big"].uint64_param
    assert [i.name for i in ours.inputs] == ["image", "text"] and list(ours.inputs[0].shape) == [2, 3, 4]
    assert list(ours.raw_input_contents) == [image.tobytes(), b"\x05\x00\x00\x00alpha\x05\x00\x00\x00" + "\u00e9t\u00e9".encode() + b"\x00" * 4]
    assert ours.outputs[0].parameters["classification"].int64_param == 3


def test_typed_contents_parse_field_by_field() -> None:
    rng = _rng()
    req = tsv.ModelInferRequest(model_name="m")
    values = {
        "bool_contents": [rng.random() < 0.5 for _ in range(5)],
        "int_contents": [rng.randrange(-(2**31), 2**31) for _ in range(5)],
        "int64_contents": [rng.randrange(-(2**63), 2**63) for _ in range(5)],
        "uint_contents": [rng.randrange(2**32) for _ in range(5)],
        "uint64_contents": [rng.randrange(2**64) for _ in range(5)],
        "fp32_contents": [float(np.float32(rng.uniform(-9, 9))) for _ in range(5)],
        "fp64_contents": [rng.uniform(-9, 9) for _ in range(5)],
        "bytes_contents": [rng.randbytes(rng.randrange(1, 9)) for _ in range(5)],
    }
    for field, vals in values.items():
        t = req.inputs.add(name=field, datatype="X", shape=[5])
        getattr(t.contents, field).extend(vals)
    ours = _cross(req, kp.ModelInferRequest)
    for t, (field, vals) in zip(ours.inputs, values.items()):
        assert list(getattr(t.contents, field)) == vals


def _populated_response(m: Any, rng: random.Random) -> Any:
    r = m.ModelInferResponse(model_name="cls", model_version="1", id="abc")
    r.parameters["sequence_id"].string_param = "s-1"
    r.parameters["triton_final_response"].bool_param = True
    r.parameters["n"].int64_param = rng.randrange(-100, 100)
    r.parameters["u"].uint64_param = 2**63 + rng.randrange(100)
    r.parameters["d"].double_param = rng.random()
    o = r.outputs.add(name="probs", datatype="FP32", shape=[1, 3])
    o.parameters["x"].bool_param = False
    r.outputs.add(name="label", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"cat")
    r.raw_output_contents.extend([rng.randbytes(12), b"\x03\x00\x00\x00cat"])
    return r


def _config(m: Any, kind: str, rng: random.Random) -> Any:
    c = m.ModelConfig(name="pipe", platform="twinpipe", backend="python", max_batch_size=rng.randrange(1, 64), default_model_filename="pipeline.yaml", runtime="")
    c.version_policy.latest.num_versions = 1
    i = c.input.add(name="image", data_type=m.TYPE_UINT8, format=m.ModelInput.FORMAT_NHWC, dims=[-1, -1, 3], optional=True, allow_ragged_batch=True)
    i.reshape.shape.extend([1, -1])
    c.input.add(name="text", data_type=m.TYPE_STRING, dims=[1], is_shape_tensor=False)
    c.output.add(name="probs", data_type=m.TYPE_FP32, dims=[1000], label_filename="labels.txt").reshape.shape.append(1000)
    c.output.add(name="emb", data_type=m.TYPE_BF16, dims=[768])
    c.instance_group.add(name="g", kind=m.ModelInstanceGroup.KIND_GPU, count=2, gpus=[0, 1], profile=["p"], passive=True, host_policy="h")
    c.parameters["EXECUTION_ENV_PATH"].string_value = "/env"
    c.model_transaction_policy.decoupled = kind == "sequence"
    c.response_cache.enable = True
    if kind == "dynamic":
        d = c.dynamic_batching
        d.preferred_batch_size.extend([4, 8])
        d.max_queue_delay_microseconds = rng.randrange(1, 10**6)
        d.preserve_ordering = True
        d.priority_levels = 3
        d.default_priority_level = 2
        q = d.default_queue_policy
        q.timeout_action, q.default_timeout_microseconds, q.allow_timeout_override, q.max_queue_size = m.ModelQueuePolicy.DELAY, 5000, True, 64
        d.priority_queue_policy[1].max_queue_size = 8
    elif kind == "sequence":
        s = c.sequence_batching
        s.max_sequence_idle_microseconds = rng.randrange(1, 10**9)
        s.oldest.max_candidate_sequences = 4
        s.oldest.preferred_batch_size.append(2)
        s.oldest.max_queue_delay_microseconds = 100
        s.oldest.preserve_ordering = True
        ci = s.control_input.add(name="START")
        ci.control.add(kind=m.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START, int32_false_true=[0, 1], data_type=m.TYPE_INT32)
        st = s.state.add(input_name="h_in", output_name="h_out", data_type=m.TYPE_FP32, dims=[16], use_same_buffer_for_input_output=True)
        st.initial_state.add(data_type=m.TYPE_FP32, dims=[16], zero_data=True, name="zeros")
        s.iterative_sequence = True
    elif kind == "direct":
        c.sequence_batching.direct.max_queue_delay_microseconds = 7
        c.sequence_batching.direct.minimum_slot_utilization = 0.5
    else:
        c.ensemble_scheduling.max_inflight_requests = 2
        step = c.ensemble_scheduling.step.add(model_name="pre", model_version=-1, model_namespace="")
        step.input_map["IN"] = "image"
        step.output_map["OUT"] = "pixels"
        c.ensemble_scheduling.step.add(model_name="net", model_version=3).input_map["x"] = "pixels"
    return m.ModelConfigResponse(config=c)


def _statistics(m: Any, rng: random.Random) -> Any:
    def dur() -> Any:
        return m.StatisticDuration(count=rng.randrange(1, 2**40), ns=rng.randrange(1, 2**60))

    s = m.ModelStatistics(name="pipe", version="1", last_inference=rng.randrange(2**45), inference_count=10, execution_count=4)
    names = ["success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss"]
    s.inference_stats.CopyFrom(m.InferStatistics(**{n: dur() for n in names}))
    s.batch_stats.add(batch_size=4, compute_input=dur(), compute_infer=dur(), compute_output=dur())
    s.memory_usage.add(type="GPU", id=0, byte_size=2**33)
    resp = {n: dur() for n in ["compute_infer", "compute_output", "success", "fail", "empty_response", "cancel"]}
    s.response_stats["0"].CopyFrom(m.InferResponseStatistics(**resp))
    return m.ModelStatisticsResponse(model_stats=[s, m.ModelStatistics(name="other")])


def _outgoing(m: Any, rng: random.Random) -> list[Any]:
    """Every message the server sends, fully populated."""
    md = m.ModelMetadataResponse(name="pipe", versions=["1", "2"], platform="twinpipe")
    md.inputs.add(name="image", datatype="UINT8", shape=[-1, -1, 3])
    md.outputs.add(name="probs", datatype="FP32", shape=[-1, 1000])
    idx = m.RepositoryIndexResponse()
    idx.models.add(name="a", version="1", state="READY", reason="")
    idx.models.add(name="b", state="UNAVAILABLE", reason="failed to load: boom")
    stream_err = m.ModelStreamInferResponse(error_message="input 'x' (FP32 [2]): expected 8 bytes of raw contents, given 4")
    stream_ok = m.ModelStreamInferResponse(infer_response=_populated_response(m, rng))
    return [
        _populated_response(m, rng),
        md,
        *(_config(m, k, rng) for k in ("dynamic", "sequence", "direct", "ensemble")),
        _statistics(m, rng),
        idx,
        m.ServerMetadataResponse(name="twinpipe", version="0.1.0", extensions=["model_repository", "statistics"]),
        stream_err,
        stream_ok,
        m.ServerLiveResponse(live=True),
        m.ServerReadyResponse(ready=True),
        m.ModelReadyResponse(ready=True),
        m.RepositoryModelLoadResponse(),
        m.RepositoryModelUnloadResponse(),
    ]


class _Triton:
    """Both of tritonclient's modules as one namespace, like our single kserve_pb2."""

    def __getattr__(self, name: str) -> Any:
        return getattr(tsv, name) if hasattr(tsv, name) else getattr(tmc, name)


def test_our_responses_parse_in_tritonclient_field_by_field() -> None:
    for ours in _outgoing(kp, _rng()):
        _cross(ours, getattr(tsv, type(ours).__name__))


def test_tritonclient_responses_parse_in_ours_field_by_field() -> None:
    for theirs in _outgoing(_Triton(), _rng()):
        _cross(theirs, getattr(kp, type(theirs).__name__))


def test_incoming_requests_from_tritonclient_parse() -> None:
    rng = _rng()
    load = tsv.RepositoryModelLoadRequest(repository_name="", model_name="pipe")
    load.parameters["config"].string_param = '{"max_batch_size": 4}'
    load.parameters["file:1/model.onnx"].bytes_param = rng.randbytes(32)
    load.parameters["n"].int64_param = -3
    load.parameters["b"].bool_param = True
    unload = tsv.RepositoryModelUnloadRequest(model_name="pipe")
    unload.parameters["unload_dependents"].bool_param = True
    for theirs in [
        load, unload,
        tsv.RepositoryIndexRequest(repository_name="r", ready=True),
        tsv.ModelMetadataRequest(name="pipe", version="2"),
        tsv.ModelConfigRequest(name="pipe", version="2"),
        tsv.ModelStatisticsRequest(name="pipe", version="1"),
        tsv.ModelReadyRequest(name="pipe", version="1"),
        tsv.ServerLiveRequest(), tsv.ServerReadyRequest(), tsv.ServerMetadataRequest(),
    ]:
        _cross(theirs, getattr(kp, type(theirs).__name__))


def test_fields_we_leave_out_survive_a_round_trip() -> None:
    # Triton's config fields we never fill (optimization, warmup, ...) are kept as unknown fields
    c = tmc.ModelConfig(name="m")
    c.optimization.priority = tmc.ModelOptimizationPolicy.PRIORITY_MAX
    c.model_warmup.add(name="w", batch_size=2)
    c.batch_input.add(target_name=["t"])
    c.instance_group.add(count=1).rate_limiter.priority = 3
    ours = kp.ModelConfig.FromString(c.SerializeToString())
    assert ours.name == "m" and ours.instance_group[0].count == 1
    assert tmc.ModelConfig.FromString(ours.SerializeToString()) == c
