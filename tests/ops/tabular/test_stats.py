"""The stats file: fit in training, save, load in serving — the same features both sides."""

from __future__ import annotations

import collections
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from twinpipe.ops import OpError, ParamError
from twinpipe.ops import tabular as tb
from twinpipe.ops.tabular._stats import resolve_path

SPEC: dict[str, Any] = {
    "age": tb.Numeric(buckets=8),
    "income": tb.Numeric(fill="median"),
    "country": tb.Categorical(max_size=20),
    "item": tb.Categorical(min_count=2),
}


def _dataset(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    age = rng.gamma(9, 4.5, n).astype(np.float32)
    age[rng.random(n) < 0.03] = np.nan
    income = rng.lognormal(10, 1, n)
    income[:3] = [np.nan, np.inf, -np.inf]
    countries = [f"c{int(k)}".encode() for k in rng.zipf(1.6, n) % 60]
    for i in rng.choice(n, 20, replace=False):
        countries[i] = [b"", None, b"\xff\xfeX", "Æ"][i % 4]  # missing, invalid UTF-8, str
    country = np.empty(n, object)
    country[:] = countries
    return {"age": age, "income": income, "country": country, "item": rng.zipf(1.4, n).astype(np.int64)}


def _features(path: str, d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The transforms a model would be trained on, with every data-derived parameter from ``path``."""
    return {
        "age_z": tb.standardize(tb.fill_missing(d["age"], stats=path, feature="age"), stats=path, feature="age"),
        "age_bucket": tb.bucketize(d["age"], stats=path, feature="age", missing_bucket=True),
        "age_unit": tb.min_max_scale(d["age"], stats=path, feature="age", clip=True),
        "income": tb.clip(tb.log1p(d["income"]), min=0.0, max=20.0),
        "income_range": tb.clip(d["income"], stats=path, feature="income"),
        "country": tb.vocab_lookup(d["country"], stats=path, feature="country", num_oov=3, missing_index=-1),
        "country_filled": tb.fill_missing(d["country"], stats=path, feature="country"),
        "item": tb.vocab_lookup(d["item"], stats=path, feature="item", num_oov=10),
    }


def test_fit_save_load_in_another_process_gives_the_same_features(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    train = _dataset(rng, 4000)
    path = str(tmp_path / "stats.json")
    stats = tb.fit(train, SPEC)
    tb.save_stats(stats, path)
    assert tb.load_stats(path) == stats  # floats round-trip bit for bit
    serve = _dataset(rng, 500)  # new requests, with values training never saw
    (tmp_path / "serve.pkl").write_bytes(pickle.dumps(serve))
    training = _features(path, serve)
    code = f"""
import pickle, sys, numpy as np
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_stats import _features
d = pickle.loads(open({str(tmp_path / "serve.pkl")!r}, "rb").read())
np.savez({str(tmp_path / "served.npz")!r}, **_features({path!r}, d))
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "123"})
    served = np.load(tmp_path / "served.npz", allow_pickle=True)
    assert set(served.files) == set(training)
    for name, want in training.items():
        np.testing.assert_array_equal(served[name], want, err_msg=name)
    # training reads torch tensors in DataLoader workers: the same values again
    t = tb.standardize(tb.fill_missing(torch.from_numpy(serve["age"]), stats=path, feature="age"), stats=path, feature="age")
    np.testing.assert_array_equal(t.numpy(), training["age_z"])


def test_numeric_stats_against_numpy_and_torch() -> None:
    rng = np.random.default_rng()
    d = _dataset(rng, 3001)
    age = tb.fit(d, SPEC)["age"]
    assert isinstance(age, tb.NumericStats)
    a = d["age"].astype(np.float64)
    finite = a[np.isfinite(a)]
    assert (age.count, age.missing, age.infinite) == (finite.size, int(np.isnan(a).sum()), 0)
    assert age.mean == pytest.approx(float(torch.from_numpy(finite).mean()), rel=1e-12)
    assert age.std == pytest.approx(float(torch.from_numpy(finite).std(correction=0)), rel=1e-12)
    assert (age.min, age.max, age.fill) == (finite.min(), finite.max(), age.mean)
    q = np.arange(1, 8) / 8
    assert age.boundaries == tuple(np.quantile(finite, q))
    np.testing.assert_allclose(age.boundaries, torch.quantile(torch.from_numpy(finite), torch.from_numpy(q)).numpy(), rtol=1e-12)
    counts = np.bincount(tb.bucketize(finite, boundaries=list(age.boundaries)), minlength=8)
    assert counts.max() - counts.min() <= 2  # equal-frequency buckets on continuous data
    income = tb.fit(d, SPEC)["income"]
    assert isinstance(income, tb.NumericStats)
    assert (income.missing, income.infinite, income.boundaries) == (1, 2, None)
    assert income.fill == np.median(d["income"][np.isfinite(d["income"])])


def test_quantile_boundaries_drop_repeats() -> None:
    x = np.array([1.0] * 90 + [2.0] * 5 + [3.0] * 5)
    b = tb.fit({"x": x}, {"x": tb.Numeric(buckets=4)})["x"]
    assert isinstance(b, tb.NumericStats) and b.boundaries == tuple(np.unique(np.quantile(x, [0.25, 0.5, 0.75])))
    assert b.boundaries == (1.0,)


def test_vocabulary_is_most_frequent_first_ties_by_value() -> None:
    rng = np.random.default_rng()
    d = _dataset(rng, 5000)
    stats = tb.fit(d, SPEC)
    country = stats["country"]
    assert isinstance(country, tb.CategoricalStats) and country.values == "string"
    normal = [v.encode() if isinstance(v, str) else v for v in d["country"] if v]  # not None, not b""
    counter = collections.Counter(normal)
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    assert country.vocabulary == tuple(v for v, _ in ranked)
    assert country.frequencies == tuple(c for _, c in ranked)
    assert country.missing == len(d["country"]) - len(normal) and country.fill == ranked[0][0]
    item = stats["item"]
    assert isinstance(item, tb.CategoricalStats) and item.values == "int"
    uniq, cnt = np.unique(d["item"], return_counts=True)
    keep = sorted(((int(u), int(c)) for u, c in zip(uniq, cnt) if c >= 2), key=lambda kv: (-kv[1], kv[0]))
    assert item.vocabulary == tuple(v for v, _ in keep)


def test_the_file_is_plain_json_with_invalid_utf8_in_base64(tmp_path: Path) -> None:
    col = np.empty(4, object)
    col[:] = [b"\xff\xfe", b"\xff\xfe", "ok", None]
    stats = tb.fit({"s": col, "f": np.array([0.5, np.nan])})
    path = tb.save_stats(stats, tmp_path / "s.json")
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["features"]["s"]["vocabulary"] == [{"base64": "//4="}, "ok"]
    assert data["features"]["f"]["missing"] == 1 and data["format"] == "twinpipe.tabular.stats"
    assert tb.load_stats(path) == stats
    assert tb.vocab_lookup(col, stats=str(path), feature="s", num_oov=0).tolist() == [0, 0, 1, -1]


def test_ops_reload_the_file_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    tb.save_stats(tb.fit({"x": np.array([1.0, 3.0])}), path)
    bound = tb.standardize.bind(stats=str(path), feature="x")
    assert bound(np.array([3.0])).tolist() == [1.0]  # mean 2, std 1
    tb.save_stats(tb.fit({"x": np.array([10.0, 30.0])}), path)
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert bound(np.array([30.0])).tolist() == [1.0]  # mean 20, std 10
    tb.save_stats(tb.fit({"y": np.array([1.0])}), path)
    os.utime(path, ns=(2, 2))
    with pytest.raises(OpError, match=r"tabular.standardize: stats .*no feature 'x'"):
        bound(np.array([1.0]))


def test_parameter_errors_name_the_op_file_and_feature(tmp_path: Path) -> None:
    path = str(tmp_path / "stats.json")
    col = np.empty(2, object)
    col[:] = [b"a", b"b"]
    tb.save_stats(tb.fit({"x": np.array([1.0, 2.0]), "s": col, "i": np.array([1, 2])}), path)
    x = np.ones(2)
    with pytest.raises(ParamError, match=r"tabular.standardize: stats '.*nope.json': stats file '.*nope.json' not found"):
        tb.standardize(x, stats=str(tmp_path / "nope.json"), feature="x")
    with pytest.raises(ParamError, match=r"tabular.standardize: stats '.*': no feature 'age'; the stats have i, s, x"):
        tb.standardize(x, stats=path, feature="age")
    with pytest.raises(ParamError, match="tabular.standardize: .*feature 's' is categorical, this op needs a numeric feature"):
        tb.standardize(x, stats=path, feature="s")
    with pytest.raises(ParamError, match="tabular.bucketize: .*feature 'x' has no boundaries"):
        tb.bucketize(x, stats=path, feature="x")
    with pytest.raises(ParamError, match="tabular.vocab_lookup: .*feature 'x' is numeric"):
        tb.vocab_lookup(x, stats=path, feature="x")
    with pytest.raises(ParamError, match="tabular.standardize: give either 'mean' and 'std' or 'stats' and 'feature', not both"):
        tb.standardize(x, mean=1.0, std=1.0, stats=path, feature="x")
    with pytest.raises(ParamError, match="tabular.standardize: 'stats' and 'feature' go together"):
        tb.standardize(x, stats=path)
    with pytest.raises(ParamError, match="tabular.fill_missing: .*feature 'i' holds integers, which are never missing"):
        tb.fill_missing(x, stats=path, feature="i")
    Path(path).write_text("{not json")
    with pytest.raises(ParamError, match="tabular.clip: stats .* is not valid JSON"):
        tb.clip(x, stats=path, feature="x")
    good = tb.fit({"x": np.array([1.0, 2.0])}).to_json()
    good["features"]["x"]["mean"] = float("nan")  # json writes NaN, which is no JSON number
    Path(path).write_text(json.dumps(good))
    with pytest.raises(ParamError, match="tabular.clip: .*feature 'x': bad entry .*expected a finite number, got nan"):
        tb.clip(x, stats=path, feature="x")
    Path(path).write_text('{"format": "something else"}')
    with pytest.raises(ParamError, match="not a tabular stats file"):
        tb.clip(x, stats=path, feature="x")


def test_fit_errors_and_edge_cases() -> None:
    with pytest.raises(tb.StatsError, match="fit: numeric feature 'x' has no finite value"):
        tb.fit({"x": np.array([np.nan, np.inf])})
    with pytest.raises(tb.StatsError, match="fit: numeric feature 'x' has no finite value"):
        tb.fit({"x": np.empty(0)})
    with pytest.raises(tb.StatsError, match="fit: no column 'y'"):
        tb.fit({"x": np.ones(2)}, {"y": "numeric"})
    with pytest.raises(tb.StatsError, match="boundaries must be finite and strictly increasing"):
        tb.fit({"x": np.ones(2)}, {"x": tb.Numeric(boundaries=[2.0, 1.0])})
    empty = tb.fit({"s": np.empty(0, object)})["s"]
    assert isinstance(empty, tb.CategoricalStats) and empty.vocabulary == () and empty.fill is None
    fixed = tb.fit({"x": np.arange(5.0)}, {"x": tb.Numeric(boundaries=[1, 2.5])})["x"]
    assert isinstance(fixed, tb.NumericStats) and fixed.boundaries == (1.0, 2.5)
    lists = tb.fit({"tags": np.array([[1, 2], [2, -1]])}, {"tags": "categorical"})["tags"]
    assert isinstance(lists, tb.CategoricalStats) and lists.vocabulary == (2, -1, 1)
    assert tb.fit({"s": ["a", None, "a"]})["s"] == tb.fit({"s": np.array([b"a", b"", b"a"], object)})["s"]


def test_packaged_paths_resolve() -> None:
    assert resolve_path("pkg:twinpipe.ops/_op.py").is_file()
    with pytest.raises(ParamError, match="stats file 'pkg:twinpipe.ops/none.json' not found"):
        tb.standardize(np.ones(1), stats="pkg:twinpipe.ops/none.json", feature="x")
    with pytest.raises(ParamError, match="no package 'no_such_pkg'"):
        tb.standardize(np.ones(1), stats="pkg:no_such_pkg/x.json", feature="x")
