"""Label files and ``classify.labels``: class indices → class names as a BYTES tensor."""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import Param
from .._spec import BYTES, TensorSpec

__all__ = ["LabelFile", "Labels", "labels", "read_labels"]

_RESOURCE = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(.+)")


@dataclass(frozen=True)
class Labels:
    """Class names, index ``i`` → ``values[i]`` (UTF-8 bytes), and where they came from."""

    source: str
    values: tuple[bytes, ...]
    _array: np.ndarray | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Labels({self.source!r}, {len(self.values)} labels)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Labels, (self.source, self.values))

    @property
    def array(self) -> np.ndarray:
        """The names as a BYTES (object) array, built once."""
        if self._array is None:
            arr = np.empty(len(self.values), BYTES)
            arr[:] = self.values
            arr.flags.writeable = False
            object.__setattr__(self, "_array", arr)
        assert self._array is not None
        return self._array


def parse_labels(data: bytes, source: str) -> Labels:
    """One label per line, UTF-8 (a BOM is skipped), ``\\n`` or ``\\r\\n``; surrounding whitespace is
    stripped and trailing empty lines are ignored. An empty line before the last label, invalid
    UTF-8 or a file without labels is a ``ValueError`` naming the line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad_line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"label file {source!r}: line {bad_line} is not valid UTF-8") from None
    lines = [line.strip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"label file {source!r} has no labels")
    for i, line in enumerate(lines):
        if not line:
            raise ValueError(f"label file {source!r}: line {i + 1} is empty (every class needs a name)")
    return Labels(source, tuple(line.encode("utf-8") for line in lines))


@functools.lru_cache(maxsize=32)
def _read_file(path: str, mtime_ns: int, size: int, source: str) -> Labels:
    return parse_labels(Path(path).read_bytes(), source)


def read_labels(spec: str) -> Labels:
    """The labels of the file ``spec``: a path (absolute, or relative to the current directory),
    or ``package:path/in/package`` for a file inside an installed Python package (e.g.
    ``twinpipe.pipelines:assets/imagenet_labels.txt``). Read once per file version."""
    path = Path(spec).expanduser()
    if not path.is_file():
        m = _RESOURCE.fullmatch(spec)
        if m is None or path.exists():
            where = "" if path.is_absolute() else f" (relative paths start at the current directory, {os.getcwd()})"
            raise ValueError(f"no label file {spec!r}{where}; give a path, or 'package:path' for a file in a package")
        package, inner = m.groups()
        try:
            root = importlib.resources.files(package)
        except (ModuleNotFoundError, TypeError) as e:
            raise ValueError(f"label file {spec!r}: cannot find package {package!r} ({e})") from None
        resource = root.joinpath(*inner.split("/"))
        if not resource.is_file():
            raise ValueError(f"label file {spec!r}: package {package!r} has no file {inner!r}")
        if not isinstance(resource, Path):
            return parse_labels(resource.read_bytes(), spec)
        path = resource
    st = path.stat()
    return _read_file(str(path.resolve()), st.st_mtime_ns, st.st_size, spec)


@dataclass(frozen=True)
class LabelFile:
    """A parameter kind: a label file (see :func:`read_labels`) or a list of names, checked and
    read when the op is bound (so a pipeline with a missing file fails validation)."""

    def check(self, value: Any) -> Labels:
        if isinstance(value, Labels):
            return value
        if isinstance(value, (str, os.PathLike)):
            return read_labels(os.fspath(value))
        if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)) and len(value) > 0:
            items = []
            for i, v in enumerate(value):
                b = v.encode("utf-8") if isinstance(v, str) else bytes(v) if isinstance(v, (bytes, bytearray)) else None
                if not b:
                    raise ValueError(f"label {i} must be a non-empty string, got {v!r}")
                items.append(b)
            return Labels(f"a list of {len(items)} labels", tuple(items))
        raise ValueError(f"expected {self.describe()}, got {value!r}")

    def describe(self) -> str:
        return "a label file (a path, or 'package:path' for a file in a Python package) or a list of names"

    def json_schema(self) -> dict[str, Any]:
        names = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
        return {"oneOf": [{"type": "string", "minLength": 1}, names]}


def _labels_reference(indices: np.ndarray, *, labels: Labels) -> np.ndarray:
    n = len(labels)
    bad = (indices < 0) | (indices >= n)
    if bad.any():
        value = int(indices[bad][0])
        raise InputError(f"classify.labels: class index {value} has no label: {labels.source} has {n} labels (indices 0 to {n - 1})")
    return labels.array[indices]


def _labels_examples(rng: np.random.Generator, indices: np.ndarray) -> dict[str, Any]:
    n = int(indices.max()) + 1 + int(rng.integers(0, 5))
    return {"labels": [f"class {i} ✓" if i % 3 else f"c{i}" for i in range(n)]}


def _labels_inputs(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    return (rng.integers(0, 50, size=int(rng.integers(1, 12))).astype(dtype),)


labels = Op(
    "classify.labels",
    doc="""Class names for class indices: ``labels[i]`` for each index, as a BYTES tensor of the
indices' shape (``[k]``, or ``[N, k]`` for a batch: feed it ``classify.topk``'s ``indices``).

``labels`` is a label file — one name per line, UTF-8, surrounding whitespace stripped, trailing
empty lines ignored (an empty line before the last name, invalid UTF-8 or no names is an error
when the op is bound) — given as a path (absolute, or relative to the current directory) or as
``package:path`` for a file shipped inside a Python package (the ImageNet names:
``twinpipe.pipelines:assets/imagenet_labels.txt``); or inline as a list of names. Each name is
its UTF-8 bytes. An index outside ``[0, number of labels)`` (negative included) is an error
naming the index and the label count — a label file that does not fit the model shows up there.
A NumPy gather (reference only). BYTES outputs are NumPy object arrays.""",
    inputs=[TensorSpec("indices", (np.int64, np.int32), "K", "class indices (a batch: N K)")],
    outputs=[TensorSpec("labels", (BYTES,), "K", "the class names, UTF-8 bytes")],
    params=[Param("labels", LabelFile(), doc="a label file (path or package:path) or a list of names")],
    reference=_labels_reference,
    example_params=_labels_examples,
    example_inputs=_labels_inputs,
)
