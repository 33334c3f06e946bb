"""WordPiece vocab files: where they are found, how they are read, and the loaded-vocab cache.

A vocab param is a string naming a file:

- an absolute path, or a path relative to the current working directory (ops know nothing of
  the pipeline file that names them);
- ``pkg://<package>/<path>``: a file shipped inside an importable Python package, resolved with
  ``importlib.resources`` (``pkg://twinpipe.pipelines/assets/wordpiece_cldr.txt``), so that a
  shipped pipeline runs from any directory.

The file is read as ``tokenizers``' ``WordPiece.read_file`` reads it: UTF-8, one token per line
(``\\n`` or ``\\r\\n``), trailing White_Space trimmed, the id is the 0-based line number; when a
token appears twice, the later line's id wins and the earlier id maps to no token (decoding
skips it). A loaded vocab is cached per resolved path, and reloaded when the file's size or
modification time changes.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._chars import WHITESPACE
from ._kernels import build_trie

__all__ = ["Token", "Trie", "Vocab", "VocabFile", "load_vocab", "resolve_vocab"]

_SCHEME = "pkg://"
_TRIM = "".join(map(chr, WHITESPACE))


@dataclass(frozen=True)
class VocabFile:
    """Param kind: a vocab file, as a path or ``pkg://package/path``."""

    def check(self, value: Any) -> str:
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ValueError(f"expected {self.describe()}, got {value!r}")
        return str(value)

    def describe(self) -> str:
        return "a vocab file: a path (absolute or relative to the working directory) or pkg://<package>/<path>"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1}


@dataclass(frozen=True)
class Token:
    """Param kind: a special token's text, a non-empty string."""

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected {self.describe()}, got {value!r}")
        return value

    def describe(self) -> str:
        return "a non-empty string"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1}


@dataclass(frozen=True, eq=False)
class Trie:
    """The vocab as a character trie in hash-table arrays, for the Numba WordPiece kernel.

    Node 0 is the root of whole-word tokens, node 1 the root of continuation tokens (those that
    start with the prefix, which is left out). ``keys[slot] = node << 21 | code point`` (or -1:
    empty), ``child[slot]`` the node it leads to, ``token_id[node]`` the id of the token that ends
    there (or -1).
    """

    keys: np.ndarray
    child: np.ndarray
    token_id: np.ndarray
    bits: int


@dataclass(eq=False)
class Vocab:
    """A loaded vocab: ``ids`` maps token → id, ``tokens[id]`` the token (None if shadowed)."""

    path: Path
    ids: dict[str, int]
    tokens: tuple[str | None, ...]
    _tries: dict[str, Trie] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __len__(self) -> int:
        return len(self.tokens)

    def trie(self, prefix: str) -> Trie:
        """The trie for the continuation ``prefix`` (``##``), built once."""
        with self._lock:
            trie = self._tries.get(prefix)
            if trie is None:
                trie = self._tries[prefix] = _build(self.ids, prefix)
            return trie


def _build(ids: dict[str, int], prefix: str) -> Trie:
    words: list[str] = []
    roots: list[int] = []
    values: list[int] = []
    for token, i in ids.items():
        if token:
            words.append(token)
            roots.append(0)
            values.append(i)
        if prefix and token.startswith(prefix) and len(token) > len(prefix):
            words.append(token[len(prefix):])
            roots.append(1)
            values.append(i)
    cps = np.frombuffer("".join(words).encode("utf-32-le"), np.uint32)
    starts = np.zeros(len(words) + 1, np.int64)
    np.cumsum([len(w) for w in words], out=starts[1:])
    bits = max(4, int(2 * len(cps) + 16).bit_length())
    keys, child, token_id = build_trie(cps, starts, np.asarray(roots, np.int64), np.asarray(values, np.int64), bits)
    return Trie(keys, child, token_id, bits)


def resolve_vocab(spec: str) -> Path:
    """The absolute path a vocab param names; ``ValueError`` if there is no such file."""
    path = Path(_locate(spec))
    if not path.is_file():
        raise ValueError(f"no vocab file {spec!r} (looked for {path})")
    return path


@functools.lru_cache(maxsize=256)
def _package_file(spec: str) -> str:
    package, _, rel = spec[len(_SCHEME):].partition("/")
    if not package or not rel:
        raise ValueError(f"vocab {spec!r}: expected pkg://<package>/<path inside the package>")
    try:
        root = importlib.resources.files(package)
    except (ImportError, TypeError) as e:
        raise ValueError(f"vocab {spec!r}: cannot import package {package!r} ({e})") from None
    return os.path.abspath(str(root.joinpath(rel)))


def _locate(spec: str) -> str:
    if spec.startswith(_SCHEME):
        return _package_file(spec)
    return os.path.abspath(os.path.expanduser(spec))


_cache: dict[str, tuple[tuple[int, int], Vocab]] = {}
_cache_lock = threading.Lock()


def load_vocab(spec: str) -> Vocab:
    """The vocab a param names, loaded once per file (reloaded if the file changes)."""
    path = _locate(spec)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        raise ValueError(f"no vocab file {spec!r} (looked for {path})")
    key = (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
    vocab = _read(Path(path))
    with _cache_lock:
        _cache[path] = (key, vocab)
    return vocab


def _read(path: Path) -> Vocab:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = data[: e.start].count(b"\n") + 1
        raise ValueError(f"vocab file {path} is not valid UTF-8 (line {at})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a final newline ends the last line, it does not start an empty one
    ids: dict[str, int] = {}
    for number, line in enumerate(lines):
        ids[line.rstrip(_TRIM)] = number
    if not ids:
        raise ValueError(f"vocab file {path} is empty")
    tokens: list[str | None] = [None] * len(lines)
    for token, i in ids.items():
        tokens[i] = token
    return Vocab(path, ids, tuple(tokens))
