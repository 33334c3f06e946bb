"""tabular.vocab_lookup: in-vocabulary indices, OOV buckets, missing strings, integer vocabularies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.tabular import fill_missing, hash_bucket, vocab_lookup

xxhash = pytest.importorskip("xxhash")


def _column(values: list[Any]) -> np.ndarray:
    col = np.empty(len(values), object)
    col[:] = values
    return col


def _words(rng: np.random.Generator, n: int) -> list[bytes]:
    """Short random words, some not valid UTF-8, some multi-byte UTF-8."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            out.append(bytes(rng.integers(128, 256, int(rng.integers(1, 6)), dtype=np.uint8)))
        elif r < 0.2:
            out.append("".join(chr(int(c)) for c in rng.integers(0x400, 0x4FF, 3)).encode())
        else:
            out.append(bytes(rng.integers(97, 105, int(rng.integers(1, 5)), dtype=np.uint8)))
    return out


@pytest.mark.parametrize("num_oov", [0, 1, 5])
def test_strings_match_a_dict_and_oov_hash_like_xxhash(num_oov: int) -> None:
    rng = np.random.default_rng()
    vocab = list(dict.fromkeys(_words(rng, 300)))
    index = {v: i for i, v in enumerate(vocab)}
    values = _words(rng, 3000)
    got = vocab_lookup(_column(values), vocabulary=vocab, num_oov=num_oov)

    def want(v: bytes) -> int:
        if v in index:
            return index[v]
        return len(vocab) + xxhash.xxh64_intdigest(v) % num_oov if num_oov else -1

    np.testing.assert_array_equal(got, [want(v) for v in values])
    assert 0 < np.mean((got >= 0) & (got < len(vocab))) < 1  # both paths taken


def test_str_none_bytearray_and_missing_index() -> None:
    vocab = ["de", "", "日本", b"\xff"]
    col = _column([b"de", "de", "日本", b"\xff", None, b"", bytearray(b"de"), b"fr"])
    got = vocab_lookup(col, vocabulary=vocab, num_oov=1)
    assert got.tolist() == [0, 0, 2, 3, 1, 1, 0, 4]  # "" is in this vocabulary, so missing finds it
    got = vocab_lookup(col, vocabulary=vocab, num_oov=1, missing_index=-1)
    assert got.tolist() == [0, 0, 2, 3, -1, -1, 0, 4]
    got = vocab_lookup(col, vocabulary=["de"], num_oov=0)
    assert got.tolist() == [0, 0, -1, -1, -1, -1, 0, -1]
    assert int(vocab_lookup("日本", vocabulary=vocab)) == 2
    assert int(vocab_lookup(b"zz", vocabulary=vocab, num_oov=3)) == 4 + xxhash.xxh64_intdigest(b"zz") % 3


def test_strings_are_binary_safe() -> None:
    vocab = [b"a\x00", b"a", b"\x00", b"\x00\x00"]
    col = _column([b"a", b"\x00\x00", b"a\x00", b"\x00", b"a\x00\x00"])
    assert vocab_lookup(col, vocabulary=vocab, num_oov=0).tolist() == [1, 3, 0, 2, -1]
    assert fill_missing(col, value="?").tolist() == col.tolist()
    assert len(set(hash_bucket(col, num_buckets=2**62).tolist())) == 5


def test_integer_vocabulary() -> None:
    rng = np.random.default_rng()
    vocab = [int(v) for v in rng.permutation(np.unique(rng.integers(-(2**40), 2**40, 500)))]
    index = {v: i for i, v in enumerate(vocab)}
    x = np.concatenate([rng.choice(vocab, 1000), rng.integers(-(2**40), 2**40, 1000)])
    got = vocab_lookup(x, vocabulary=vocab, num_oov=7)
    want = [index.get(int(v), len(vocab) + xxhash.xxh64_intdigest(int(v).to_bytes(8, "little", signed=True)) % 7) for v in x]
    np.testing.assert_array_equal(got, want)
    small = np.array([3, 1, 99], np.int32)
    assert vocab_lookup(small, vocabulary=[1, 3], num_oov=0).tolist() == [1, 0, -1]
    t = vocab_lookup(torch.tensor([3, 1]), vocabulary=[1, 3])
    assert isinstance(t, torch.Tensor) and t.tolist() == [1, 0]


def test_shapes_and_empty() -> None:
    col = _column([b"a", b"b", b"", b"c", b"a", None]).reshape(2, 3)
    got = vocab_lookup(col, vocabulary=["a", "b"], num_oov=1, missing_index=-1)
    assert got.tolist() == [[0, 1, -1], [2, 0, -1]]
    assert vocab_lookup(np.empty(0, object), vocabulary=["a"]).shape == (0,)
    assert vocab_lookup(np.empty((2, 0), np.int64), vocabulary=[1]).shape == (2, 0)
    assert vocab_lookup(_column([b"a", b"b"]), vocabulary=[], num_oov=0).tolist() == [-1, -1]
    assert vocab_lookup(np.array([5]), vocabulary=[], num_oov=1).tolist() == [0]


def test_errors() -> None:
    with pytest.raises(InputError, match="tabular.vocab_lookup: the vocabulary holds strings, the input is int64"):
        vocab_lookup(np.arange(3), vocabulary=["a"])
    with pytest.raises(InputError, match="tabular.vocab_lookup: the vocabulary holds integers, the input is bytes"):
        vocab_lookup(_column([b"a"]), vocabulary=[1, 2])
    with pytest.raises(ParamError, match="tabular.vocab_lookup: parameter 'vocabulary'.*'a' is listed twice"):
        vocab_lookup(np.arange(3), vocabulary=["a", "a"])
    with pytest.raises(ParamError, match="tabular.vocab_lookup: parameter 'vocabulary'.*a mix"):
        vocab_lookup(np.arange(3), vocabulary=["a", 1])
    with pytest.raises(ParamError, match="tabular.vocab_lookup: give 'vocabulary', or 'stats' and 'feature'"):
        vocab_lookup(np.arange(3))
    with pytest.raises(InputError, match="tabular.vocab_lookup: string element 1 is float"):
        vocab_lookup(_column([b"a", 1.5]), vocabulary=["a"])


def test_passes_the_op_testing_kit(kit: Any) -> None:
    report = kit(vocab_lookup)
    assert report.cases["cpu/object"] == 12 and report.cases["cpu/int32"] == 12
