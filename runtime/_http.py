"""The HTTP/REST frontend: KServe v2 over HTTP/1.1 with the binary-data extension, Triton's
generate extension (``/generate``, ``/generate_stream`` as server-sent events) and ``/metrics``
— wire-compatible with ``tritonclient.http``, ``perf_analyzer -i http`` and curl.

It is aiohttp's low-level server (its C HTTP parser, keep-alive, request decompression) with
one handler that routes by path: no framework between the socket and the Engine. Errors answer
the v2 error body ``{"error": "..."}`` with the status of the Engine's error code: 400 bad
request, 404 unknown model or endpoint, 503 unavailable (queue full, shutting down), 504 past
the request's timeout, 500 internal; 413 for a body over the limit (checked before it is read).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from ._engine import Engine, InferResponse
from ._errors import EngineError, InvalidArgumentError
from ._rest import RestRequest, decode_generate, decode_request, encode_generate, encode_response, json_body, parameters
from ._servable import Servable
from ._wire import WireError

__all__ = ["HttpFrontend"]

_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}
_JSON = "application/json"
_HEADER_LENGTH = "Inference-Header-Content-Length"
_MODEL_GETS = ("", "ready", "config", "stats")
_MODEL_POSTS = ("infer", "generate", "generate_stream")


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


class HttpFrontend:
    """The HTTP server in front of an :class:`Engine`.

    Args:
        max_body_bytes: the largest request body (after decompression); a larger one is refused
            with 413 before it is read (default 256 MiB).
    """

    def __init__(self, engine: Engine, *, host: str = "0.0.0.0", port: int = 8000, max_body_bytes: int = 256 << 20) -> None:
        self.engine, self.host, self.port = engine, host, port
        self.max_body_bytes = max_body_bytes
        self._server: web.Server | None = None
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None

    async def start(self) -> int:
        """Bind and start serving; returns the bound port (``port=0`` picks a free one)."""
        # a client that leaves cancels its request (as on gRPC); no access log on the hot path
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise OSError(f"cannot listen for HTTP on {self.host}:{self.port} (is the port in use?): {e.strerror or e}") from None
        self._server, self._runner, self._site = server, runner, site
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting connections; requests in flight get up to ``grace_s`` to finish."""
        if self._runner is None or self._server is None or self._site is None:
            return
        await self._site.stop()
        await self._server.shutdown(grace_s)
        await self._runner.cleanup()
        self._runner = None

    # -- routing ---------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._route(request)
        except EngineError as e:
            return _error(_STATUS.get(e.code, 500), str(e))
        except _HttpError as e:
            return _error(e.status, str(e), e.headers)
        except Exception as e:  # a bug: 500, and the server lives on
            return _error(500, f"internal error: {type(e).__name__}: {e}")

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        method = request.method
        if parts[0] == "v2":
            rest = parts[1:]
            if len(rest) >= 2 and rest[0] == "models" and rest[1] != "stats":
                return await self._model(request, method, rest[1:])
            route = _ROUTES.get("/".join(rest))
            if route is not None:
                wanted, fn = route
                _method(method, wanted, request.path)
                return await fn(self, request)
            if len(rest) == 4 and rest[:2] == ["repository", "models"] and rest[3] in ("load", "unload"):
                _method(method, "POST", request.path)
                return await self._repository(request, rest[2], rest[3])
            if rest and rest[0] in ("systemsharedmemory", "cudasharedmemory"):
                raise _HttpError(400, "shared memory is not supported by this server; send tensors in the request body "
                                      "(the binary-data extension carries them without JSON)")
        elif parts == ["metrics"]:
            _method(method, "GET", request.path)
            return self._metrics()
        hint = "; list the models with POST /v2/repository/index" if parts[:2] == ["v2", "models"] else ""
        raise _HttpError(404, f"no endpoint {method} {request.path}{hint}")

    async def _model(self, request: web.BaseRequest, method: str, rest: list[str]) -> web.StreamResponse:
        """``/v2/models/{m}[/versions/{v}][/action]``."""
        name, version, action = rest[0], None, rest[1:]
        if len(action) >= 2 and action[0] == "versions":
            version, action = action[1], action[2:]
        verb = action[0] if len(action) == 1 else "" if not action else None
        if verb in _MODEL_GETS:
            _method(method, "GET", request.path)
            if verb == "ready":
                self.engine.get(name, version)  # unknown: 404 with the reason
                if not self.engine.is_ready(name, version):
                    raise _HttpError(503, f"model {name!r} is not ready (the server is shutting down)")
                return web.Response(status=200)
            if verb == "stats":
                return _json({"model_stats": self.engine.statistics(name, version)})
            servable = self.engine.get(name, version)
            return _json(servable.config() if verb == "config" else servable.metadata())
        if verb in _MODEL_POSTS:
            _method(method, "POST", request.path)
            servable = self.engine.get(name, version)  # before the body is read: unknown is 404 at once
            if verb == "infer":
                return await self._infer(request, servable)
            return await self._generate(request, servable, stream=verb == "generate_stream")
        raise _HttpError(404, f"no endpoint {method} {request.path}; a model's endpoints are: (metadata), "
                              f"{', '.join(a for a in _MODEL_GETS + _MODEL_POSTS if a)}")

    # -- inference -------------------------------------------------------------------------------

    async def _infer(self, request: web.BaseRequest, servable: Servable) -> web.StreamResponse:
        if servable.decoupled:
            raise InvalidArgumentError(f"{servable.label} streams its responses (it is decoupled); call "
                                       f"POST /v2/models/{servable.name}/generate_stream, or gRPC ModelStreamInfer")
        body = await self._body(request)
        req = decode_request(body, _header_length(request))
        result = await self.engine.submit(servable, req.inputs, request_id=req.id, parameters=req.parameters,
                                          outputs=req.outputs)
        head, chunks = encode_response(result, req)
        if not chunks:
            return _compressed(request, web.Response(body=head, content_type=_JSON))
        response = web.Response(body=b"".join((head, *chunks)), headers={_HEADER_LENGTH: str(len(head)),
                                                                           hdrs.CONTENT_TYPE: "application/octet-stream"})
        return _compressed(request, response)

    async def _generate(self, request: web.BaseRequest, servable: Servable, *, stream: bool) -> web.StreamResponse:
        """Triton's generate extension; ``generate_stream`` also takes a v2 inference request
        (``"inputs": [...]``), answering each response as a v2 response in JSON."""
        body = await self._body(request)
        length = _header_length(request)
        parsed = json_body(body) if length is None else None
        v2 = length is not None or (isinstance(parsed, dict) and isinstance(parsed.get("inputs"), list))
        req: RestRequest | None = None
        batched = servable.max_batch_size > 0
        if v2:
            req = decode_request(body, length, parsed=parsed)
            inputs, params, outputs, request_id = req.inputs, req.parameters, req.outputs, req.id
        else:
            inputs, params = decode_generate(parsed, servable.inputs, batched)
            outputs, request_id = None, ""

        def encode(result: InferResponse) -> bytes:
            """A response as JSON bytes: a v2 response (tensors in JSON), or a generate answer."""
            if v2:
                return encode_response(result, req, binary_ok=False)[0]
            return json.dumps(encode_generate(result, batched), separators=(",", ":")).encode()

        if not stream:
            if servable.decoupled:
                raise InvalidArgumentError(f"{servable.label} streams its responses (it is decoupled); call "
                                           f"POST /v2/models/{servable.name}/generate_stream")
            result = await self.engine.submit(servable, inputs, request_id=request_id, parameters=params, outputs=outputs)
            return web.Response(body=encode(result), content_type=_JSON)
        responses = self.engine.submit_stream(servable, inputs, request_id=request_id, parameters=params, outputs=outputs)
        return await _events(request, responses, encode)

    async def _body(self, request: web.BaseRequest) -> bytes:
        """The whole body, refused (413) past the limit: by its Content-Length before reading (and
        before a client that sends ``Expect: 100-continue`` is told to send it), and as it arrives
        when that is not known or the body is compressed."""
        limit, declared = self.max_body_bytes, request.content_length
        if declared is not None and declared > limit:
            raise _too_large(declared, limit)
        if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue" and request.version >= (1, 1):
            # curl asks before sending a body over 1 KiB; without an answer it waits a second
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        if declared is not None and hdrs.CONTENT_ENCODING not in request.headers:
            try:
                return await request.content.readexactly(declared) if declared else b""
            except asyncio.IncompleteReadError as e:
                raise _HttpError(400, f"the request body ended after {len(e.partial)} of its {declared} bytes") from None
        parts, total = [], 0
        while chunk := await request.content.readany():
            total += len(chunk)
            if total > limit:
                raise _too_large(total, limit, more=True)
            parts.append(chunk)
        return b"".join(parts)

    # -- the server and the repository -----------------------------------------------------------

    async def _live(self, request: web.BaseRequest) -> web.StreamResponse:
        if not self.engine.live:
            raise _HttpError(503, "the server is shutting down")
        return web.Response(status=200)

    async def _ready(self, request: web.BaseRequest) -> web.StreamResponse:
        if not self.engine.ready:
            why = "the server is shutting down" if self.engine.closing else \
                "not every model and pipeline of the repository is loaded (see POST /v2/repository/index)"
            raise _HttpError(503, f"not ready: {why}")
        return web.Response(status=200)

    async def _server_metadata(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json(self.engine.server_metadata(("binary_tensor_data", "generate")))

    async def _all_stats(self, request: web.BaseRequest) -> web.StreamResponse:
        return _json({"model_stats": self.engine.statistics()})

    async def _index(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await self._options(request, "the index request", ("ready",))
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise WireError(f"the index request's 'ready' must be a boolean, given {json.dumps(ready)}")
        return _json([dict(r) for r in self.engine.index() if not ready or r["state"] == "READY"])

    async def _repository(self, request: web.BaseRequest, name: str, action: str) -> web.StreamResponse:
        body = await self._options(request, f"the {action} request", ("parameters",))
        params = parameters(body.get("parameters", {}), f"the {action} request's parameters")
        if action == "load":
            if params:  # Triton lets a request carry config/files; twinpipe loads only its repository
                raise InvalidArgumentError(f"load {name!r}: parameters ({', '.join(params)}) are not supported; "
                                           "twinpipe loads models from its repository only")
            await asyncio.to_thread(self.engine.load, name)
        else:
            extra = [k for k in params if k != "unload_dependents"]
            if extra:
                raise InvalidArgumentError(f"unload {name!r}: unknown parameter {extra[0]!r} (unload_dependents)")
            self.engine.unload(name)  # pipelines using it become unavailable either way
        return web.Response(status=200)

    async def _options(self, request: web.BaseRequest, what: str, keys: tuple[str, ...]) -> dict[str, Any]:
        """An optional small JSON object body with only ``keys``."""
        raw = await self._body(request)
        if not raw.strip():
            return {}
        body = json_body(raw, what)
        if not isinstance(body, dict):
            raise WireError(f"{what} must be a JSON object")
        unknown = [k for k in body if k not in keys]
        if unknown:
            raise WireError(f"{what}: unknown field {unknown[0]!r} ({', '.join(keys)})")
        return body

    def _metrics(self) -> web.StreamResponse:
        metrics = self.engine.metrics
        if metrics is None:
            raise _HttpError(404, "metrics are off (twinpipe serve --metrics-port -1)")
        text, content_type = metrics.render()
        return web.Response(body=text, headers={hdrs.CONTENT_TYPE: content_type})


_Handler = Callable[[HttpFrontend, web.BaseRequest], Awaitable[web.StreamResponse]]
_ROUTES: dict[str, tuple[str, _Handler]] = {
    "": ("GET", HttpFrontend._server_metadata),
    "health/live": ("GET", HttpFrontend._live),
    "health/ready": ("GET", HttpFrontend._ready),
    "models/stats": ("GET", HttpFrontend._all_stats),
    "repository/index": ("POST", HttpFrontend._index),
}


def _method(given: str, wanted: str, path: str) -> None:
    if given != wanted:
        raise _HttpError(405, f"{path} takes {wanted}, not {given}", {hdrs.ALLOW: wanted})


def _header_length(request: web.BaseRequest) -> int | None:
    value = request.headers.get(_HEADER_LENGTH)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise WireError(f"{_HEADER_LENGTH} must be a number of bytes, given {value!r}") from None


def _too_large(size: int, limit: int, *, more: bool = False) -> _HttpError:
    return _HttpError(413, f"the request body is {'over ' if more else ''}{size} bytes, over the limit of {limit} "
                           "(twinpipe serve --max-message-mb)")


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(value, separators=(",", ":")).encode(), status=status, content_type=_JSON)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = _json({"error": message}, status)
    if headers:
        response.headers.update(headers)
    return response


def _compressed(request: web.BaseRequest, response: web.Response) -> web.Response:
    """Compress when the client asks (tritonclient's ``response_compression_algorithm``)."""
    accept = request.headers.get(hdrs.ACCEPT_ENCODING)
    if accept:
        for coding in (web.ContentCoding.gzip, web.ContentCoding.deflate):
            if coding.value in accept:
                response.enable_compression(coding)
                break
    return response


async def _events(request: web.BaseRequest, responses: AsyncIterator[InferResponse],
                  encode: Callable[[InferResponse], bytes]) -> web.StreamResponse:
    """Server-sent events, one ``data:`` event per response. The first response (or error) is
    awaited before the status is sent, so a request that fails at once gets its HTTP error; a
    later error is an ``{"error": ...}`` event and ends the stream."""
    try:
        first: InferResponse | None = await anext(responses)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await responses.aclose()  # type: ignore[attr-defined]
        raise
    stream = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8", hdrs.CACHE_CONTROL: "no-cache"})
    try:
        await stream.prepare(request)
        item = first
        while item is not None:
            await stream.write(_event(encode(item)))  # already JSON
            item = await anext(responses, None)
    except EngineError as e:
        await stream.write(_event(_error_json(str(e))))
    except (ConnectionError, asyncio.CancelledError):
        raise  # the client left: the finally below stops the stream's work
    except Exception as e:
        await stream.write(_event(_error_json(f"internal error: {type(e).__name__}: {e}")))
    finally:
        await responses.aclose()  # type: ignore[attr-defined]
    await stream.write_eof()
    return stream


def _error_json(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode()


def _event(data: bytes) -> bytes:
    """One server-sent event carrying ``data`` (JSON: one line, so one ``data:`` field)."""
    return b"data: " + data + b"\n\n"

