"""The Pipeline API: load a pipeline file, run it, take a part of it, hand it to training.

    from twinpipe.dag import load_pipeline

    pipe = load_pipeline("imagenet_preprocess")            # a name (search paths) or a path
    out = pipe(image=jpeg_bytes)                           # {"pixels": array}, serve mode
    out = pipe.run({"image": jpeg_bytes}, mode="train", rng=0)
    pre = pipe.select(outputs=["pre.image"])                # only the steps that produce it
    ds = pipe.dataset(files, mode="train", seed=0)          # for a torch DataLoader
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinpipe.ops import get_op

from ._datatypes import dtype_of
from ._executor import Executor, RunStats, Seed
from ._load import load_spec
from ._plan import Mode, Plan
from ._resolved import ModelInfo, ResolvedStep, TensorType, ValidPipeline, op_step_fn
from ._spec import PipelineSpec
from ._validate import validate

if TYPE_CHECKING:
    from ._transform import BatchTransform, PipelineDataset, Transform

__all__ = ["DEFAULT_SEARCH_PATHS", "Pipeline", "find_pipeline", "load_pipeline"]

#: Folders searched for a pipeline given by name, after the caller's ``search_paths``.
DEFAULT_SEARCH_PATHS: list[Path] = []

_SUFFIXES = (".yaml", ".yml")


def find_pipeline(name: str, search_paths: Sequence[str | Path] = ()) -> Path:
    """The file of the pipeline called ``name`` (``<name>.yaml`` in a search path), or a path as given."""
    as_path = Path(name)
    if as_path.suffix in _SUFFIXES or as_path.is_file() or len(as_path.parts) > 1:
        if not as_path.is_file():
            raise FileNotFoundError(f"no pipeline file {name}")
        return as_path.resolve()
    folders = [Path(p) for p in search_paths] + list(DEFAULT_SEARCH_PATHS)
    for folder in folders:
        for suffix in _SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate.resolve()
    known = sorted({p.stem for f in folders if f.is_dir() for p in f.iterdir() if p.suffix in _SUFFIXES})
    where = ", ".join(str(f) for f in folders) or "no search paths"
    raise FileNotFoundError(
        f"no pipeline named {name!r} in {where}" + (f"; pipelines there: {', '.join(known)}" if known else "")
    )


def load_pipeline(
    path_or_name: str | Path,
    *,
    models: Mapping[str, Any] | None = None,
    search_paths: Sequence[str | Path] = (),
) -> Pipeline:
    """Load, validate and compile a pipeline from a file or by name.

    Raises ``PipelineError`` listing every problem in the file (with file, line and step).
    ``models`` gives the model steps what runs them; ``search_paths`` are searched (before
    :data:`DEFAULT_SEARCH_PATHS`) for a pipeline given by name and for nested pipelines.
    """
    paths = tuple(str(p) for p in search_paths)
    path = find_pipeline(str(path_or_name), paths)
    # the folders as they are now: a spawned DataLoader worker must search the same ones
    folders = (*paths, *(str(p) for p in DEFAULT_SEARCH_PATHS if str(p) not in paths))
    source = _FileSource(str(path), dict(models) if models is not None else None, folders)
    return Pipeline(source.load(), source=source)


@dataclass(frozen=True)
class _FileSource:
    """How to load a pipeline again (after pickling): the file and the options it was loaded with."""

    path: str
    models: dict[str, Any] | None
    search_paths: tuple[str, ...]

    def load(self) -> ValidPipeline:
        return validate(load_spec(self.path), models=self.models, search_paths=self.search_paths)

    def __reduce__(self) -> tuple[Any, ...]:
        # the models' declarations travel, not the loaded models: a TorchScript module cannot be
        # pickled (spawn workers), and a DataLoader's transform has no model step to run
        models = None if self.models is None else {
            name: replace(info, fn=None) if isinstance(info, ModelInfo) else info for name, info in self.models.items()}
        return (_FileSource, (self.path, models, self.search_paths))


@dataclass(frozen=True)
class _OpsSource:
    """A pipeline of op steps built in code: pickled as its spec, re-bound on unpickling."""

    valid: ValidPipeline

    def __reduce__(self) -> tuple[Any, ...]:
        v = self.valid
        bad = [s.name for s in v.steps if s.spec.kind != "op"]
        if bad:
            raise TypeError(
                f"pipeline {v.spec.name!r} was not loaded from a file and has non-op steps "
                f"({', '.join(bad)}): load it with load_pipeline to pickle it"
            )
        meta = tuple((s.outputs, s.is_random, s.op_name) for s in v.steps)
        return (_rebuild_ops, (v.spec, v.types, v.graph, meta))

    def load(self) -> ValidPipeline:
        return self.valid


def _rebuild_ops(spec: PipelineSpec, types: dict[str, TensorType], graph: Any, meta: tuple[Any, ...]) -> _OpsSource:
    steps = tuple(
        ResolvedStep(s, op_step_fn(get_op(op_name or s.target).bind(**s.params)), outs, random, op_name)
        for s, (outs, random, op_name) in zip(spec.steps, meta)
    )
    return _OpsSource(ValidPipeline(spec, steps, types, graph))


class Pipeline:
    """A validated, compiled pipeline (or the part of one that produces ``outputs``).

    Call it with the inputs as keywords (``pipe(image=data)``, serve mode) or use :meth:`run`.
    Picklable: a loaded pipeline pickles as its file and options and loads again on unpickling.

    Args:
        valid: the validated pipeline (``load_pipeline`` makes one from a file).
        outputs: what to produce; default the pipeline's outputs (see :meth:`select`).
        inputs: step outputs to take as inputs instead of computing them (see :meth:`select`).
        max_workers: threads for independent branches.
    """

    def __init__(
        self,
        valid: ValidPipeline,
        *,
        outputs: Sequence[str] | None = None,
        inputs: Sequence[str] = (),
        max_workers: int | None = None,
        source: _FileSource | None = None,
    ) -> None:
        self.valid = valid
        self._source: _FileSource | _OpsSource = source or _OpsSource(valid)
        self._selection = (None if outputs is None else tuple(outputs), tuple(inputs))
        self._max_workers = max_workers
        self._executor = Executor(valid, outputs=outputs, inputs=inputs, max_workers=max_workers)
        if outputs is not None or inputs:
            self._executor.plan("serve")  # a bad selection fails here, not at the first run
            self._executor.plan("train")

    # -- what it is ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.valid.spec.name

    @property
    def path(self) -> str:
        return self.valid.spec.path

    @property
    def spec(self) -> PipelineSpec:
        return self.valid.spec

    @property
    def executor(self) -> Executor:
        return self._executor

    def plan(self, mode: Mode = "serve") -> Plan:
        """The compiled plan for ``mode`` (``print(pipe.plan().describe())`` shows it)."""
        return self._executor.plan(mode)

    @property
    def inputs(self) -> dict[str, TensorType]:
        """The inputs this pipeline (or selection) reads in either mode: name → type."""
        names: dict[str, None] = {}
        for mode in ("serve", "train"):
            names.update((n, None) for n, _ in self._executor.plan(mode).inputs)
        declared = [d.name for d in self.spec.inputs]
        order = sorted(names, key=lambda n: declared.index(n) if n in declared else len(declared))
        return {n: self._type_of(n) for n in order}

    @property
    def outputs(self) -> dict[str, TensorType]:
        """The outputs it produces: name → type."""
        return {name: self._type_of(name) for name, _ in self._executor.plan("serve").outputs}

    def _type_of(self, name: str) -> TensorType:
        types = self.valid.types
        if name in types:
            return types[name]
        for decl in (*self.spec.inputs, *self.spec.outputs):
            if decl.name == name:
                if decl.source is not None and str(decl.source) in types:
                    return types[str(decl.source)]
                return TensorType(dtype_of(decl.datatype), decl.shape)
        return TensorType(None, None)

    @property
    def stats(self) -> RunStats | None:
        """Timings of the last run (``stats.step_seconds``); None before the first."""
        return self._executor.last_stats

    def __repr__(self) -> str:
        ins = ", ".join(f"{k}: {v}" for k, v in self.inputs.items())
        outs = ", ".join(f"{k}: {v}" for k, v in self.outputs.items())
        return f"<Pipeline {self.name} ({ins}) -> ({outs})>"

    # -- running -------------------------------------------------------------------------------

    def __call__(self, /, **inputs: Any) -> dict[str, Any]:
        """Run in serve mode on the inputs given as keywords; returns the outputs by name."""
        return self._executor.run(inputs)

    def run(self, inputs: Mapping[str, Any], *, rng: Seed = None, mode: Mode = "serve") -> dict[str, Any]:
        """Run on ``inputs`` (name → one sample, a dense batch or a list of samples).

        ``mode="train"`` runs the train-only steps and the random augmentations, drawing from
        ``rng`` (a seed or a numpy Generator; fresh entropy without one). Serve mode is
        deterministic. An output whose step was skipped is absent from the result.
        """
        return self._executor.run(inputs, rng=rng, mode=mode)

    async def run_async(
        self, inputs: Mapping[str, Any], *, rng: Seed = None, mode: Mode = "serve"
    ) -> dict[str, Any]:
        """:meth:`run` without blocking the event loop."""
        return await self._executor.run_async(inputs, rng=rng, mode=mode)

    # -- parts and training --------------------------------------------------------------------

    def select(self, outputs: Sequence[str], *, inputs: Sequence[str] = ()) -> Pipeline:
        """The sub-pipeline producing only ``outputs``: only the steps they need run.

        ``outputs`` may name pipeline outputs or step outputs (``"pre.image"``): that is how
        training takes the pre-processing without the model steps. ``inputs`` names step
        outputs to feed instead of computing (``["decode.image"]`` for decoded images).
        """
        if isinstance(outputs, str):
            outputs = [outputs]
        return Pipeline(self.valid, outputs=outputs, inputs=inputs, max_workers=self._max_workers,
                        source=self._source if isinstance(self._source, _FileSource) else None)

    def transform(
        self, mode: Mode = "train", seed: int = 0, outputs: Sequence[str] | None = None, *, inputs: Sequence[str] = ()
    ) -> Transform:
        """A picklable per-sample transform giving torch tensors (see :class:`Transform`)."""
        from ._transform import Transform

        return Transform(self._selected(outputs, inputs), mode=mode, seed=seed)

    def batch_transform(
        self, mode: Mode = "train", seed: int = 0, outputs: Sequence[str] | None = None, *, inputs: Sequence[str] = ()
    ) -> BatchTransform:
        """A transform for a collated batch in the training loop (see :class:`BatchTransform`)."""
        from ._transform import BatchTransform

        return BatchTransform(self._selected(outputs, inputs), mode=mode, seed=seed)

    def dataset(
        self, source: Any, mode: Mode = "train", seed: int = 0, outputs: Sequence[str] | None = None
    ) -> PipelineDataset:
        """A map-style dataset: ``source[i]`` through :meth:`transform` (see :class:`PipelineDataset`)."""
        from ._transform import PipelineDataset

        return PipelineDataset(source, self.transform(mode, seed, outputs))

    def _selected(self, outputs: Sequence[str] | None, inputs: Sequence[str]) -> Pipeline:
        return self if outputs is None and not inputs else self.select(
            outputs if outputs is not None else [n for n, _ in self._executor.plan("serve").outputs], inputs=inputs
        )

    # -- pickling ------------------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        outputs, inputs = self._selection
        return (_restore, (self._source, outputs, inputs, self._max_workers))


def _restore(
    source: _FileSource | _OpsSource, outputs: Sequence[str] | None, inputs: Sequence[str], max_workers: int | None
) -> Pipeline:
    return Pipeline(
        source.load(), outputs=outputs, inputs=inputs, max_workers=max_workers,
        source=source if isinstance(source, _FileSource) else None,
    )
