"""Training reuse: a pipeline as a ``torch.utils.data`` transform, a dataset, and a batch transform.

The transform runs the very executor that serving runs, so in serve mode a DataLoader produces
exactly the tensors the server computes for the same bytes. In train mode each sample draws
from a seed derived from ``(seed, epoch, index)``: the same sample gets the same augmentation in
the same epoch whichever worker loads it and however many workers there are, and a different
one the next epoch::

    pipe = load_pipeline("imagenet_preprocess")
    ds = pipe.dataset(jpeg_bytes_list, mode="train", seed=0)       # or PipelineDataset(...)
    loader = DataLoader(ds, batch_size=64, num_workers=8)
    for epoch in range(90):
        ds.set_epoch(epoch)                                        # before iterating
        for batch in loader: ...

torch is imported only when a transform runs, so importing twinpipe.dag stays light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._executor import PipelineInputError
from ._plan import Mode

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["BatchTransform", "PipelineDataset", "Transform", "sample_seed", "to_torch"]

_BATCH_KEY = 0x6261746368  # keeps batch seeds apart from sample seeds with the same numbers


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index`` in ``epoch``: a hash of all three (not their sum)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


def to_torch(value: Any) -> Any:
    """A pipeline output as torch: arrays become tensors (sharing memory where they can),
    lists and dicts are converted item by item, torch tensors and other values pass through."""
    import torch

    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return value
        if not (value.flags.writeable and all(s >= 0 for s in value.strides)):
            value = value.copy()
        return torch.from_numpy(value)
    if type(value) in (list, tuple):
        return type(value)(to_torch(v) for v in value)
    if isinstance(value, Mapping):
        return {k: to_torch(v) for k, v in value.items()}
    if isinstance(value, (float, int, np.number)) and not isinstance(value, bool):
        return torch.as_tensor(value)
    return value


class _Base:
    """What the transforms share: the pipeline, mode and seed, and how a sample becomes inputs."""

    def __init__(self, pipeline: Pipeline, *, mode: Mode = "train", seed: int = 0) -> None:
        if mode not in ("train", "serve"):
            raise ValueError(f"mode must be 'train' or 'serve', got {mode!r}")
        self.pipeline = pipeline
        self.mode: Mode = mode
        self.seed = int(seed)
        names = list(pipeline.inputs)
        self._input = names[0] if len(names) == 1 else None
        self._outputs = list(pipeline.outputs)

    def _inputs(self, sample: Any) -> Mapping[str, Any]:
        if isinstance(sample, Mapping):
            return sample
        if self._input is None:
            raise PipelineInputError(
                f"pipeline {self.pipeline.name!r} has inputs {', '.join(self.pipeline.inputs)}: "
                "pass a sample as a dict of input name to value"
            )
        return {self._input: sample}

    def _result(self, outputs: dict[str, Any]) -> Any:
        if len(self._outputs) == 1:
            name = self._outputs[0]
            if name not in outputs:
                raise ValueError(
                    f"pipeline {self.pipeline.name!r}: output {name!r} was not produced in {self.mode} mode "
                    "(its step was skipped)"
                )
            return to_torch(outputs[name])
        return {k: to_torch(v) for k, v in outputs.items()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pipeline.name} mode={self.mode} seed={self.seed}>"


class Transform(_Base):
    """A picklable per-sample transform: one sample in, torch tensors out.

    A sample is the value of the pipeline's one input (e.g. encoded bytes) or a dict of inputs.
    It returns the output as a tensor, or a dict of tensors when there are several outputs.

    Train mode draws from ``sample_seed(seed, epoch, index)`` when ``index`` is given (a
    :class:`PipelineDataset` passes it). Without an index it draws from a per-process generator
    seeded from ``seed`` and ``torch.initial_seed()`` — which DataLoader makes different per
    worker and reproducible under ``torch.manual_seed`` — as torchvision's transforms do.
    Serve mode never draws.
    """

    def __init__(self, pipeline: Pipeline, *, mode: Mode = "train", seed: int = 0) -> None:
        super().__init__(pipeline, mode=mode, seed=seed)
        self._gen: np.random.Generator | None = None
        self._gen_pid = 0

    def __call__(self, sample: Any, *, index: int | None = None, epoch: int = 0) -> Any:
        rng: int | np.random.Generator | None = None
        if self.mode == "train":
            rng = sample_seed(self.seed, epoch, index) if index is not None else self._fallback()
        return self._result(self.pipeline.run(self._inputs(sample), rng=rng, mode=self.mode))

    def _fallback(self) -> np.random.Generator:
        if self._gen is None or self._gen_pid != os.getpid():
            import torch

            self._gen = np.random.default_rng([self.seed, torch.initial_seed()])
            self._gen_pid = os.getpid()
        return self._gen

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_gen"] = None  # a worker seeds its own
        return state


class PipelineDataset:
    """A map-style dataset (for ``torch.utils.data.DataLoader``): ``source[i]`` through a transform.

    ``source`` is any sequence (``len`` and indexing): items are a sample (bytes, an array, a
    dict of inputs), or a tuple whose first element is the sample and the rest pass through
    unchanged (``(bytes, label)`` → ``(tensor, label)``). Each item's seed is derived from
    ``(seed, epoch, i)``. Call :meth:`set_epoch` before iterating a DataLoader for an epoch
    (with ``persistent_workers=True`` the workers keep the epoch they started with).
    """

    def __init__(self, source: Sequence[Any], transform: Transform, *, epoch: int = 0) -> None:
        self.source = source
        self.transform = transform
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Any:
        item = self.source[index]
        if type(item) is tuple:
            return (self.transform(item[0], index=index, epoch=self.epoch), *item[1:])
        return self.transform(item, index=index, epoch=self.epoch)


class BatchTransform(_Base):
    """The pipeline on a whole batch in the training loop: torch tensors in, torch tensors out.

    A batch is a dense tensor (batch dimension first, e.g. ``N H W C`` uint8 from the default
    collate), a list of samples, or a dict of those per input. The ops run where the tensors
    live (CPU tensors on the CPU kernels; CUDA tensors on the ops' CUDA kernels). Train mode
    draws from a seed derived from ``(seed, step)``; ``step`` defaults to a counter of calls
    (:meth:`set_step` restores it when resuming).
    """

    def __init__(self, pipeline: Pipeline, *, mode: Mode = "train", seed: int = 0) -> None:
        super().__init__(pipeline, mode=mode, seed=seed)
        self.step = 0

    def set_step(self, step: int) -> None:
        self.step = int(step)

    def __call__(self, batch: Any, *, step: int | None = None) -> Any:
        if step is None:
            step = self.step
            self.step += 1
        rng = sample_seed(self.seed, _BATCH_KEY, step) if self.mode == "train" else None
        return self._result(self.pipeline.run(self._inputs(batch), rng=rng, mode=self.mode))
