"""``twinpipe parity``: the claim the project is named for, checked on your own files.

    twinpipe parity PIPELINE --data DIR_OR_GLOB [--server HOST:PORT] [--workers 2] [--atol 0]

Each file is one sample: its bytes are the pipeline's one BYTES input. Every sample goes through

* the training path: ``pipeline.dataset(files, mode="serve")`` in a real ``torch.utils.data.DataLoader``
  (``workers`` worker processes, ``batch_size=None``: one sample at a time), with every output of
  every step that runs in serve mode selected, so each intermediate tensor comes back;
* the serving path, in-process: an :class:`~twinpipe.runtime.Engine` loads the pipeline from the
  repository as ``twinpipe serve`` would; the pipeline it loaded runs the request (a batch of one,
  as a client sends it) with the same step outputs selected, and ``Engine.infer`` answers the same
  request through the real request path (input checks, the batcher, the response), whose outputs
  are compared as further rows;
* with ``server``, a running server over gRPC (``tritonclient``). Only the pipeline's outputs cross
  the wire, so the step-by-step comparison stays in-process and the server's outputs become rows
  of their own: a difference over the wire and none in-process points at the deployment (another
  repository, another version), not at the pipeline.

Tensors are compared exactly: dtype and shape must match; with ``atol=0`` numbers must be equal bit
for bit (any NaN matches any NaN; -0.0 does not match 0.0), with ``atol > 0`` they may differ by up
to ``atol``; BYTES (object) tensors are compared element by element. A file that every path refuses
(not an image) is noted, not counted as a mismatch; a file only some paths refuse is a mismatch.
Inner steps of a nested pipeline step are not compared one by one (its outputs are).
"""

from __future__ import annotations

import asyncio
import glob
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twinpipe.dag import Pipeline, PipelineError, find_pipeline, load_pipeline

__all__ = ["ParityError", "ParityResult", "ParityRow", "compare", "parity", "render"]

_ABSENT: Any = object()  # a tensor a path did not produce (its step skipped by ``when:``)
_SHOWN = 3  # problems shown per row


class ParityError(ValueError):
    """Parity cannot run (no files, an unknown pipeline, a pipeline that is not one BYTES input...)."""


@dataclass(frozen=True)
class _Failed:
    """A path that raised on a sample, instead of its tensors."""

    message: str


@dataclass(frozen=True)
class Diff:
    """One tensor of one sample, compared: ``problem`` says why it could not be compared element-wise."""

    mismatched: int
    total: int
    max_abs_diff: float | None  # None: not numbers
    dtype: str
    shape: tuple[int, ...] | None  # None: a list
    problem: str | None = None


@dataclass
class ParityRow:
    """One tensor on one path, over all samples."""

    tensor: str
    path: str  # "in-process", "Engine.infer" or "gRPC"
    dtype: str = ""
    shape: tuple[int | None, ...] | None = None  # None dims vary between samples
    max_abs_diff: float | None = None
    mismatched: int = 0
    total: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.problems

    def add(self, sample: str, train: Any, serve: Any, atol: float) -> None:
        if train is _ABSENT or serve is _ABSENT:
            if not (train is _ABSENT and serve is _ABSENT):
                self.problems.append(f"{sample}: produced only on the {'serving' if train is _ABSENT else 'training'} path")
            return
        d = compare(train, serve, atol)
        self.samples += 1
        self.mismatched += d.mismatched
        self.total += d.total
        if d.problem:
            self.problems.append(f"{sample}: {d.problem}")
        if d.max_abs_diff is not None:
            old = self.max_abs_diff
            self.max_abs_diff = d.max_abs_diff if old is None or math.isnan(d.max_abs_diff) else max(old, d.max_abs_diff)
        self.dtype = self.dtype or d.dtype
        if self.samples == 1 or self.shape is None or d.shape is None or len(d.shape) != len(self.shape):
            self.shape = d.shape if self.samples == 1 else None
        else:
            self.shape = tuple(a if a == b else None for a, b in zip(self.shape, d.shape))


@dataclass
class ParityResult:
    """What :func:`parity` found: a row per tensor and path, notes, failures; ``exit_code`` 0 or 1."""

    pipeline: str
    files: list[str]
    rows: list[ParityRow]
    atol: float
    workers: int
    server: str | None = None
    serving: str | None = None  # the served pipeline's file, when it is not the trained one
    notes: list[str] = field(default_factory=list)  # samples every path refused
    failures: list[str] = field(default_factory=list)  # samples some paths refused; nothing compared

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows) and not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


# -- comparing ---------------------------------------------------------------------------------


def _numpy(value: Any) -> Any:
    """A value as numpy (lists stay lists of numpy): torch tensors from the DataLoader included."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        import torch

        t = value.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()  # bf16 → f32 is exact
    if isinstance(value, (list, tuple)):
        return [_numpy(v) for v in value]
    if isinstance(value, (bytes, str)):
        return np.array(value, dtype=object)
    return np.asarray(value)


def _same_object(x: Any, y: Any) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))
    try:
        return type(x) is type(y) and bool(x == y)
    except (TypeError, ValueError):
        return False


def compare(train: Any, serve: Any, atol: float = 0.0) -> Diff:
    """Compare one tensor (numpy, torch, a list of them, bytes) from the two paths."""
    a, b = _numpy(train), _numpy(serve)
    if isinstance(a, list) or isinstance(b, list):
        if not (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)):
            return Diff(1, 1, None, "list", None, f"a list of {len(a) if isinstance(a, list) else 'no'} items vs "
                                                  f"{len(b) if isinstance(b, list) else 'not a list'}")
        parts = [compare(x, y, atol) for x, y in zip(a, b)]
        diffs = [p.max_abs_diff for p in parts if p.max_abs_diff is not None]
        return Diff(sum(p.mismatched for p in parts), sum(p.total for p in parts), max(diffs) if diffs else None,
                    "list", None, next((f"item {i}: {p.problem}" for i, p in enumerate(parts) if p.problem), None))
    dtype = str(a.dtype)
    if a.dtype != b.dtype or a.shape != b.shape:
        what = [f"dtype {a.dtype} vs {b.dtype}"] if a.dtype != b.dtype else []
        what += [f"shape {_shape(a.shape)} vs {_shape(b.shape)}"] if a.shape != b.shape else []
        n = max(a.size, b.size)
        return Diff(n, n, None, dtype, a.shape, "; ".join(what))
    if a.dtype.kind in "iu":  # equality on the integers themselves: float64 rounds those above 2**53
        same = a == b
        diff = np.where(same, 0.0, np.maximum(np.abs(a.astype(np.float64) - b.astype(np.float64)), 1.0))
        bad = ~same if atol == 0 else diff > atol
        return Diff(int(bad.sum()), a.size, float(diff.max()) if a.size else 0.0, dtype, a.shape)
    if a.dtype.kind == "f":
        x, y = a.astype(np.float64), b.astype(np.float64)
        both_nan = np.isnan(x) & np.isnan(y)
        diff = np.where((x == y) | both_nan, 0.0, np.abs(x - y))  # (inf == inf: no inf - inf = nan)
        if atol == 0:  # bit for bit, NaN payloads aside
            bits = np.dtype(f"u{a.dtype.itemsize}")
            bad = (a.view(bits) != b.view(bits)) & ~both_nan
        else:
            bad = (diff > atol) | np.isnan(diff)
        return Diff(int(bad.sum()), a.size, float(diff.max()) if a.size else 0.0, dtype, a.shape)
    if a.dtype == object:
        bad_n = sum(not _same_object(x, y) for x, y in zip(a.flat, b.flat))
        return Diff(bad_n, a.size, None, "BYTES" if all(isinstance(v, (bytes, str)) for v in a.flat) else dtype, a.shape)
    eq = a == b  # bool, complex, strings
    return Diff(int(a.size - np.count_nonzero(eq)), a.size, None, dtype, a.shape)


def _shape(shape: Sequence[int | None] | None) -> str:
    if shape is None:
        return "list"
    return "×".join("*" if d is None else str(d) for d in shape) or "scalar"


def _unbatch(serve: Any, train: Any) -> Any:
    """The serving path's value for a batch of one, as the one sample the training path gives."""
    if isinstance(serve, (list, tuple)):
        return serve[0] if len(serve) == 1 and not isinstance(train, (list, tuple)) else serve
    shape = getattr(serve, "shape", None)
    if not shape or shape[0] != 1:
        return serve
    tshape = getattr(train, "shape", None)
    return serve[0] if tshape is None or len(shape) == len(tshape) + 1 else serve


def _wire(value: Any) -> Any:
    """A training value as it would cross the wire: BYTES elements that are str become UTF-8 bytes."""
    v = _numpy(value)
    if isinstance(v, np.ndarray) and v.dtype == object:
        return np.array([x.encode() if isinstance(x, str) else x for x in v.flat], dtype=object).reshape(v.shape)
    return v


# -- the two paths -----------------------------------------------------------------------------


class _Files:
    """The files' bytes, read when indexed (in the DataLoader's workers)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> bytes:
        return self.paths[index].read_bytes()


class _Guarded:
    """A dataset whose items that raise come back as :class:`_Failed` (the loader goes on)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as e:
            return _Failed(f"{type(e).__name__}: {e}")


def _find_files(data: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [data] if isinstance(data, (str, Path)) else list(data)
    if not items:
        raise ParityError("--data: give a folder, a glob or a file")
    found: dict[Path, None] = {}
    for item in items:
        p = Path(item)
        if p.is_dir():
            matches = sorted(c for c in p.iterdir() if c.is_file() and not c.name.startswith("."))
        elif p.is_file():
            matches = [p]
        elif any(c in str(item) for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True) if Path(m).is_file())
        else:
            raise ParityError(f"--data {item}: no such file or folder")
        if not matches:
            raise ParityError(f"--data {item}: no files {'in the folder' if p.is_dir() else 'match'}")
        found.update(dict.fromkeys(matches))
    return list(found)


def _load(name: str | Path, models: dict[str, Any]) -> Pipeline:
    try:
        pipe = load_pipeline(find_pipeline(str(name)), models=models)
    except FileNotFoundError as e:
        raise ParityError(str(e)) from None
    except PipelineError as e:
        raise ParityError(str(e)) from None
    if pipe.valid.streaming_step is not None:
        raise ParityError(f"pipeline {pipe.name!r} streams (step {pipe.valid.streaming_step!r}): parity compares one "
                          "result per sample")
    return pipe


def _input_of(pipe: Pipeline) -> str:
    names = [n for n, _ in pipe.plan("serve").inputs]
    decls = {d.name: d.datatype for d in pipe.spec.inputs}
    if len(names) != 1 or decls.get(names[0]) != "BYTES":
        given = ", ".join(f"{n} ({decls.get(n, '?')})" for n in names) or "none"
        raise ParityError(f"pipeline {pipe.name!r} reads the inputs {given}: parity feeds each file's bytes as the "
                          "pipeline's one BYTES input")
    return names[0]


def _step_outputs(pipe: Pipeline) -> list[str]:
    """Every output of every step that runs in serve mode, in plan order."""
    steps = {s.name: s for s in pipe.valid.steps}
    return [f"{st.name}.{o}" for st in pipe.plan("serve").steps for o in steps[st.name].outputs]


def _engine(models_root: Path, pipeline_file: Path, name: str) -> Any:
    """An Engine over the models, loading the pipeline from its own folder as a server would."""
    from ._engine import Engine

    engine = Engine(models_root, load=False)
    engine.pipelines_root = pipeline_file.parent
    engine.load_all()
    if not engine.is_ready(name):
        why = next((r["reason"] for r in engine.index() if r["name"] == name), "not in the repository")
        engine.close()
        raise ParityError(f"the engine did not load pipeline {name!r}: {why}")
    return engine


async def _served_run(sel: Pipeline, engine: Any, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The engine's loaded pipeline on one request; python steps get an engine context (ctx.infer works)."""
    from ._context import EngineContext

    ctx = EngineContext(engine, asyncio.get_running_loop(), pipeline=name) if sel.plan("serve").any_ctx else None
    return await sel.executor.run_async(inputs, mode="serve", ctx=ctx)


def _grpc(server: str, name: str, input_name: str, outputs: list[str]) -> tuple[Any, Any]:
    """A tritonclient gRPC client and a function sending one sample to ``name``."""
    try:
        import tritonclient.grpc as tg
        from tritonclient.utils import InferenceServerException
    except ImportError:
        raise ParityError("--server needs tritonclient: pip install 'tritonclient[grpc]'") from None
    client = tg.InferenceServerClient(server)
    try:
        ready = client.is_model_ready(name)
    except InferenceServerException as e:
        client.close()
        raise ParityError(f"--server {server}: {e.message()}") from None
    if not ready:
        client.close()
        raise ParityError(f"--server {server}: pipeline {name!r} is not ready there")

    def send(data: bytes) -> dict[str, Any]:
        x = tg.InferInput(input_name, [1], "BYTES")
        x.set_data_from_numpy(np.array([data], dtype=object))
        result = client.infer(name, [x], outputs=[tg.InferRequestedOutput(o) for o in outputs])
        return {o: result.as_numpy(o) for o in outputs}

    return client, send


def _attempt(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:
        return _Failed(f"{type(e).__name__}: {e}")


def parity(
    pipeline: str | Path,
    data: str | Path | Sequence[str | Path],
    *,
    repository: str | Path | None = None,
    server: str | None = None,
    workers: int = 2,
    atol: float = 0.0,
    serving_pipeline: str | Path | None = None,
) -> ParityResult:
    """Run every file of ``data`` through the training and the serving path and compare every tensor.

    Args:
        pipeline: a shipped pipeline's name or a .yaml path.
        data: a folder (its files), a glob, a file, or a list of those; each file is one sample.
        repository: the model repository (default: the shipped one).
        server: ``host:port`` of a running server: its outputs are compared too, over gRPC.
        workers: the DataLoader's worker processes (0: in this process).
        atol: how far numbers may differ (0: bit for bit).
        serving_pipeline: serve this pipeline file instead (a new version against the one trained with).

    Raises :class:`ParityError` when it cannot run; a mismatch is in the result (``exit_code`` 1).
    """
    if not (atol >= 0 and math.isfinite(atol)):
        raise ParityError(f"--atol {atol}: must be a finite number >= 0")
    if workers < 0:
        raise ParityError(f"--workers {workers}: must be >= 0")
    files = _find_files(data)
    from twinpipe.models import load_repository
    from twinpipe.pipelines import models_dir

    models_root = Path(repository) if repository is not None else models_dir()
    if not models_root.is_dir():
        raise ParityError(f"--repository {models_root}: not a folder")
    loaded = load_repository(models_root)
    try:
        train = _load(pipeline, loaded.model_infos())
        served_file = Path(train.path) if serving_pipeline is None else find_pipeline(str(serving_pipeline))
    except (ParityError, FileNotFoundError) as e:
        broken = "".join(f"\nmodel {m!r} did not load: {err}" for m, err in loaded.errors.items())
        raise ParityError(f"{e}{broken}") from None
    input_name = _input_of(train)
    engine = _engine(models_root, served_file, served_file.stem)
    client = None
    try:
        served: Pipeline = engine.get(served_file.stem).served.pipeline
        if _input_of(served) != input_name:
            raise ParityError(f"the served pipeline reads {_input_of(served)!r}, the trained one {input_name!r}")
        train_names, serve_names = _step_outputs(train), _step_outputs(served)
        outputs = list(served.outputs)
        paths = ["Engine.infer", *(["gRPC"] if server else [])]
        rows = {(n, "in-process"): ParityRow(n, "in-process") for n in [*train_names, *serve_names]}
        rows.update({(o, p): ParityRow(o, p) for p in paths for o in outputs})
        one_sided = set()  # tensors only one pipeline has: a mismatch, with nothing to compare
        for (n, p), row in rows.items():
            where = (train_names, serve_names) if p == "in-process" else (list(train.outputs), outputs)
            if n not in where[0] or n not in where[1]:
                row.problems.append(f"only in the {'served' if n in where[1] else 'trained'} pipeline")
                one_sided.add((n, p))
        if server:
            client, send = _grpc(server, served.name, input_name, outputs)
        result = ParityResult(train.name, [str(f) for f in files], list(rows.values()), atol, workers, server,
                              None if serving_pipeline is None else str(served_file))
        sel_train = train.select(outputs=[*train_names, *(o for o in train.outputs if o not in train_names)])
        sel_serve = served.select(outputs=serve_names)

        def serve_in_process(request: dict[str, Any]) -> dict[str, Any]:
            return asyncio.run(_served_run(sel_serve, engine, served.name, request))

        def serve_engine(request: dict[str, Any]) -> dict[str, Any]:
            return dict(engine.infer(served.name, request).outputs)

        import torch.utils.data

        dataset = _Guarded(sel_train.dataset(_Files(files), mode="serve"))
        loader: Any = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)  # type: ignore[arg-type]
        compared = 0
        for path, item in zip(files, loader):
            raw = path.read_bytes()
            request = {input_name: np.array([raw], dtype=object)}
            got: dict[str, Any] = {"training": item if isinstance(item, (_Failed, dict)) else {next(iter(sel_train.outputs)): item},
                                   "in-process": _attempt(serve_in_process, request),
                                   "Engine.infer": _attempt(serve_engine, request)}
            if server:
                got["gRPC"] = _attempt(send, raw)
            compared += _compare_sample(result, rows, one_sided, str(path), got)
        if not compared:
            result.failures.append("no sample went through the training path: nothing was compared")
        return result
    finally:
        if client is not None:
            client.close()
        engine.close()


def _compare_sample(result: ParityResult, rows: dict[tuple[str, str], ParityRow], one_sided: set[tuple[str, str]],
                    sample: str, got: dict[str, Any]) -> int:
    """Add one sample's tensors to the rows; 1 if its training path ran, else 0."""
    failed = {k: v.message.splitlines()[0] for k, v in got.items() if isinstance(v, _Failed)}
    if failed and len(failed) == len(got):
        result.notes.append(f"{sample}: {failed['training'][:200]}")
        return 0
    if failed:
        result.failures.append(f"{sample}: failed on the {', '.join(failed)} path only: "
                               + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    if "training" in failed:
        return 0
    train = got["training"]
    for (name, p), row in rows.items():
        if p in failed or (name, p) in one_sided:
            continue
        t, s = train.get(name, _ABSENT), got[p].get(name, _ABSENT)
        if s is not _ABSENT:
            s = _unbatch(s, None if t is _ABSENT else _numpy(t))
        if p == "gRPC" and t is not _ABSENT:
            t = _wire(t)  # the wire has no str: BYTES arrive as bytes
        row.add(sample, t, s, result.atol)
    return 1


# -- the report --------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return "0" if x == 0 else f"{x:.3g}"


def render(result: ParityResult) -> str:
    """The per-tensor table, the notes and problems, and a summary line."""
    head = ("tensor", "path", "dtype", "shape", "max abs diff", "mismatching", "samples")
    table = [head] + [
        (r.tensor, r.path, r.dtype or "-", _shape(r.shape) if r.samples else "-", _num(r.max_abs_diff),
         f"{r.mismatched:,} / {r.total:,}", str(r.samples)) for r in result.rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    tolerance = "bit for bit" if result.atol == 0 else f"within {result.atol:g}"
    where = "Engine in-process" + (f", gRPC {result.server} (outputs only)" if result.server else "")
    where += f" of {result.serving}" if result.serving else ""
    lines = [f"parity of {result.pipeline}: {len(result.files)} files; training: DataLoader, {result.workers} worker{'' if result.workers == 1 else 's'}; "
             f"serving: {where}; {tolerance}", ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    problems = [f"{r.tensor} ({r.path}): {p}" for r in result.rows for p in r.problems[:_SHOWN]]
    problems += [f"… and {len(r.problems) - _SHOWN} more on {r.tensor} ({r.path})" for r in result.rows if len(r.problems) > _SHOWN]
    for title, items in (("refused by every path (not compared):", result.notes),
                         ("problems:", [*result.failures, *problems])):
        if items:
            lines += ["", title, *(f"  {x}" for x in items)]
    bad = [r for r in result.rows if not r.ok]
    if result.ok:
        summary = f"OK: {len(result.rows)} tensors agree {tolerance} on every compared sample"
    else:
        parts = [f"{len(bad)} of {len(result.rows)} tensors differ (first: {bad[0].tensor}, {bad[0].path})"] if bad else []
        parts += [f"{len(result.failures)} problems (above)"] if result.failures else []
        summary = "MISMATCH: " + "; ".join(parts)
    return "\n".join([*lines, "", summary])
