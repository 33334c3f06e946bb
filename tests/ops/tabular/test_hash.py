"""tabular.hash_bucket and its XXH64: known answers, the xxhash package, other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.tabular import hash_bucket, xxh64
from twinpipe.ops.tabular._xxh64 import hash_packed

# (data, seed, XXH64) as the C library computes them (xxhash 4.1.0 wrapping libxxhash 0.8.4);
# "" and "abc" are the published test values of the xxHash specification
KNOWN = [
    (b"", 0, 0xEF46DB3751D8E999),
    (b"a", 0, 0xD24EC4F1A98C6E5B),
    (b"abc", 0, 0x44BC2CF5AD770999),
    (b"abc", 1, 0xBEA9CA8199328908),
    (b"hello world", 0, 0x45AB6734B21E6968),
    (bytes(range(32)), 0, 0xCBF59C5116FF32B4),
    (bytes(range(100)), 2**63 + 1, 0x69F0E27710B18DEC),
    ("日本語".encode(), 0, 0x7179A19F3719F5E1),
    (b"\xff\xfe\x00", 0, 0xB421A162D1A83986),
    (b"The quick brown fox jumps over the lazy dog", 0, 0x0B242D361FDA71BC),
]
# integers: XXH64 (seed 0) of their 8 little-endian two's-complement bytes
KNOWN_INTS = [
    (0, 0x34C96ACDCADB1BBB),
    (1, 0x9F29CB17A2A49995),
    (-1, 0x85D136ADB773C6C9),
    (2**63 - 1, 0xFF70CC60366E770C),
    (-(2**63), 0x3F425EACF01544E0),
    (123456789, 0xCB7C2941B198004D),
]


def _column(values: list[Any]) -> np.ndarray:
    col = np.empty(len(values), object)
    col[:] = values
    return col


def _random_bytes(rng: np.random.Generator, n: int) -> list[bytes]:
    return [bytes(rng.integers(0, 256, int(rng.integers(0, 100)), dtype=np.uint8)) for _ in range(n)]


@pytest.mark.parametrize(("data", "seed", "want"), KNOWN)
def test_xxh64_known_answers(data: bytes, seed: int, want: int) -> None:
    assert xxh64(data, seed) == want  # the pure-Python reference
    out = np.empty(1, np.uint64)  # the Numba kernel, on the full 64-bit hash and any seed
    hash_packed(np.frombuffer(data, np.uint8), np.array([0, len(data)]), np.uint64(seed), out)
    assert int(out[0]) == want
    if seed <= 2**62:  # the op (its seed parameter stops at 2**62)
        assert int(hash_bucket(np.asarray(data, object), num_buckets=2**62, seed=seed)) == want % 2**62
        assert int(hash_bucket(_column([data]), num_buckets=2**62, seed=seed)[0]) == want % 2**62


@pytest.mark.parametrize(("value", "want"), KNOWN_INTS)
def test_integers_hash_their_int64_little_endian_bytes(value: int, want: int) -> None:
    got = hash_bucket(np.array([value], np.int64), num_buckets=2**62)
    assert int(got[0]) == want % 2**62


def test_kernel_equals_the_xxhash_package_on_random_bytes_of_every_length() -> None:
    xxhash = pytest.importorskip("xxhash")
    rng = np.random.default_rng()
    data = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in range(0, 200)] + _random_bytes(rng, 500)
    for seed in (0, int(rng.integers(1, 2**62))):
        for n in (1, 7, 1000, 2**62):
            got = hash_bucket(_column(data), num_buckets=n, seed=seed)
            want = np.array([xxhash.xxh64_intdigest(d, seed) % n for d in data], np.int64)
            np.testing.assert_array_equal(got, want)


def test_int_columns_equal_the_xxhash_package() -> None:
    xxhash = pytest.importorskip("xxhash")
    rng = np.random.default_rng()
    v = rng.integers(-(2**63), 2**63 - 1, 2000, dtype=np.int64, endpoint=True)
    got = hash_bucket(v, num_buckets=10007, seed=5)
    want = [xxhash.xxh64_intdigest(int(x).to_bytes(8, "little", signed=True), 5) % 10007 for x in v]
    np.testing.assert_array_equal(got, want)
    small = rng.integers(-(2**31), 2**31 - 1, 500).astype(np.int32)
    np.testing.assert_array_equal(hash_bucket(small, num_buckets=97), hash_bucket(small.astype(np.int64), num_buckets=97))


def test_stable_across_processes_with_other_hash_seeds() -> None:
    values = ["alpha", "", "日本", "x" * 70]
    ints = [0, -5, 2**40]
    here = [hash_bucket(_column(values), num_buckets=1000).tolist(), hash_bucket(np.array(ints), num_buckets=1000).tolist()]
    code = (
        "import json, numpy as np\n"
        "from twinpipe.ops.tabular import hash_bucket\n"
        f"c = np.empty(4, object); c[:] = {values!r}\n"
        f"print(json.dumps([hash_bucket(c, num_buckets=1000).tolist(), hash_bucket(np.array({ints!r}), num_buckets=1000).tolist()]))\n"
        # Python's own hash() does change with the seed: proof the seeds took effect
        "print(hash('alpha'))\n"
    )
    seen = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
        lines = out.stdout.strip().splitlines()
        assert json.loads(lines[0]) == here
        seen.add(lines[1])
    assert len(seen) > 1


def test_strings_str_none_and_invalid_utf8() -> None:
    col = _column([b"caf\xc3\xa9", "café", None, b"", b"\xff\xfe", bytearray(b"ab"), np.bytes_(b"ab")])
    got = hash_bucket(col, num_buckets=2**40)
    assert got[0] == got[1]  # str is its UTF-8 bytes
    assert got[2] == got[3] == xxh64(b"") % 2**40  # missing is the empty string
    assert got[4] == xxh64(b"\xff\xfe") % 2**40
    assert got[5] == got[6] == xxh64(b"ab") % 2**40
    assert hash_bucket(np.array([b"ab", b"c"]), num_buckets=99).tolist() == hash_bucket(_column([b"ab", b"c"]), num_buckets=99).tolist()
    assert int(hash_bucket("café", num_buckets=2**40)) == got[0]
    assert int(hash_bucket(b"\xff\xfe", num_buckets=2**40)) == got[4]


def test_shapes_empty_columns_and_torch() -> None:
    rng = np.random.default_rng()
    lists = _column(_random_bytes(rng, 12)).reshape(3, 4)
    got = hash_bucket(lists, num_buckets=50)
    assert got.shape == (3, 4) and got.dtype == np.int64
    np.testing.assert_array_equal(got.ravel(), hash_bucket(lists.ravel(), num_buckets=50))
    assert hash_bucket(np.empty(0, object), num_buckets=5).shape == (0,)
    assert hash_bucket(np.empty((0, 3), np.int64), num_buckets=5).shape == (0, 3)
    ids = rng.integers(0, 10**9, 100)
    t = hash_bucket(torch.from_numpy(ids), num_buckets=1000)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int64
    np.testing.assert_array_equal(t.numpy(), hash_bucket(ids, num_buckets=1000))
    assert hash_bucket(np.arange(10), num_buckets=1).tolist() == [0] * 10


def test_buckets_are_uniform_and_seeds_independent() -> None:
    rng = np.random.default_rng()
    ids = np.arange(200_000, dtype=np.int64) + int(rng.integers(0, 2**40))
    counts = np.bincount(hash_bucket(ids, num_buckets=100), minlength=100)
    assert counts.min() > 1700 and counts.max() < 2300  # expected 2000, sd ≈ 44
    a, b = hash_bucket(ids, num_buckets=100, seed=0), hash_bucket(ids, num_buckets=100, seed=1)
    assert 0.005 < float(np.mean(a == b)) < 0.015  # independent: 1 in 100 agree


def test_bad_input_and_params() -> None:
    with pytest.raises(InputError, match=r"tabular.hash_bucket: string element 1 is int"):
        hash_bucket(_column([b"a", 3]), num_buckets=5)
    with pytest.raises(InputError, match=r"tabular.hash_bucket: input 'x' has dtype float32"):
        hash_bucket(np.ones(3, np.float32), num_buckets=5)
    with pytest.raises(ParamError, match=r"tabular.hash_bucket: parameter 'num_buckets'"):
        hash_bucket(np.arange(3), num_buckets=0)
    with pytest.raises(ParamError, match=r"tabular.hash_bucket: parameter 'seed'"):
        hash_bucket(np.arange(3), num_buckets=3, seed=-1)


def test_passes_the_op_testing_kit(kit: Any) -> None:
    report = kit(hash_bucket)
    assert report.cases["cpu/object"] == 12 and report.cases["cpu/int64"] == 12
