"""The shipped tabular pipeline: raw features → model-ready tensors, from the shipped stats file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from twinpipe.dag import load_pipeline
from twinpipe.ops import tabular as tb
from twinpipe.pipelines import asset_path, pipelines_dir

COUNTRIES = ["US", "IN", "BR", "DE", "GB", "FR", "JP", "MX", "CA", "ES", "IT", "KR", "NG", "PL", "SE", "TR"]
SPEC: dict[str, Any] = {
    "age": tb.Numeric(buckets=6),
    "country": tb.Categorical(max_size=8),
    "item_id": tb.Categorical(max_size=32),
}


def training_data(n: int = 5000, seed: int = 20240501) -> dict[str, Any]:
    """The synthetic training set the shipped ``tabular_stats.json`` was fitted on.

    Regenerate the asset with ``tabular.save_stats(tabular.fit(training_data(), SPEC), path)``.
    """
    rng = np.random.default_rng(seed)
    age = (16 + rng.gamma(4.0, 6.0, n)).astype(np.float32)
    age[rng.random(n) < 0.02] = np.nan
    p = np.array([35, 15, 10, 8, 7, 6, 5, 4] + [1.25] * 8)
    country = np.empty(n, object)
    country[:] = [COUNTRIES[i].encode() for i in rng.choice(len(COUNTRIES), n, p=p / p.sum())]
    country[rng.random(n) < 0.01] = b""
    item_id = (rng.zipf(1.3, n) * 7919 % 100_003).astype(np.int64)
    return {"age": age, "country": country, "item_id": item_id}


def _requests() -> dict[str, Any]:
    """A batch of raw rows, with what serving meets: NaN, unknown and missing values, bad UTF-8."""
    country = np.empty(7, object)
    country[:] = [b"US", b"DE", b"ZZ", b"", b"\xff\xfe", b"JP", b"IN"]
    return {
        "age": np.array([34.0, np.nan, 18.5, 71.0, 25.0, 0.0, 120.0], np.float32),
        "country": country,
        "item_id": np.array([7919, 15838, 1, -5, 2**40, 7919, 23757], np.int64),
    }


def _stats() -> dict[str, Any]:
    """The shipped stats, read with plain ``json`` (not the loader under test)."""
    features: dict[str, Any] = json.loads(asset_path("tabular_stats.json").read_text())["features"]
    return features


def test_the_shipped_stats_are_what_fit_makes_of_the_documented_data() -> None:
    shipped = tb.load_stats(asset_path("tabular_stats.json"))
    fitted = tb.fit(training_data(), SPEC)
    for name in ("country", "item_id"):
        assert shipped[name] == fitted[name]
    age, want = shipped["age"], fitted["age"]
    assert isinstance(age, tb.NumericStats) and isinstance(want, tb.NumericStats)
    assert age.boundaries is not None and want.boundaries is not None
    np.testing.assert_allclose([age.mean, age.std, *age.boundaries], [want.mean, want.std, *want.boundaries], rtol=1e-12)


def _check_outputs(out: dict[str, Any], raw: dict[str, Any]) -> None:
    stats = _stats()
    age, country = stats["age"], stats["country"]
    filled = np.where(np.isnan(raw["age"]), np.float32(age["fill"]), raw["age"])
    np.testing.assert_array_equal(out["age_z"], ((filled.astype(np.float64) - age["mean"]) / age["std"]).astype(np.float32))
    b = np.array(age["boundaries"])
    want_bucket = np.where(np.isnan(raw["age"]), len(b) + 1, np.digitize(raw["age"].astype(np.float64), b))
    np.testing.assert_array_equal(out["age_bucket"], want_bucket)
    np.testing.assert_array_equal(out["age_onehot"], F.one_hot(torch.from_numpy(want_bucket), len(b) + 2).numpy())
    vocab = [v.encode() for v in country["vocabulary"]]
    xxhash = pytest.importorskip("xxhash")
    want_country = [-1 if not v else vocab.index(v) if v in vocab else len(vocab) + xxhash.xxh64_intdigest(v) % 2
                    for v in raw["country"]]
    np.testing.assert_array_equal(out["country_id"], want_country)
    onehot = np.zeros((len(want_country), len(vocab) + 2), np.float32)
    for i, k in enumerate(want_country):
        if k >= 0:
            onehot[i, k] = 1
    np.testing.assert_array_equal(out["country_onehot"], onehot)
    items = stats["item_id"]["vocabulary"]
    want_items = [items.index(v) if v in items else len(items) + xxhash.xxh64_intdigest(int(v).to_bytes(8, "little", signed=True)) % 16
                  for v in raw["item_id"]]
    np.testing.assert_array_equal(out["item_index"], want_items)
    want_hash = [xxhash.xxh64_intdigest(int(v).to_bytes(8, "little", signed=True)) % 100_000 for v in raw["item_id"]]
    np.testing.assert_array_equal(out["item_bucket"], want_hash)


def test_pipeline_by_name_and_path_turns_raw_rows_into_features() -> None:
    raw = _requests()
    for pipe in (load_pipeline("tabular_features"), load_pipeline(pipelines_dir() / "tabular_features.yaml")):
        out = pipe(**raw)
        assert {k: (v.dtype.name, v.shape) for k, v in out.items()} == {
            "age_z": ("float32", (7,)), "age_bucket": ("int64", (7,)), "age_onehot": ("float32", (7, 7)),
            "country_id": ("int64", (7,)), "country_onehot": ("float32", (7, 10)),
            "item_index": ("int64", (7,)), "item_bucket": ("int64", (7,)),
        }
        _check_outputs(out, raw)


def test_one_row_and_an_empty_batch() -> None:
    pipe = load_pipeline("tabular_features")
    one = pipe(age=np.float32(40.0), country=b"FR", item_id=np.int64(7919))
    assert one["age_onehot"].shape == (7,) and one["country_onehot"].argmax() == _stats()["country"]["vocabulary"].index("FR")
    empty = pipe(age=np.empty(0, np.float32), country=np.empty(0, object), item_id=np.empty(0, np.int64))
    assert empty["country_onehot"].shape == (0, 10) and empty["item_bucket"].shape == (0,)


def _registered_in_a_fresh_process() -> bool:
    code = "from twinpipe.ops import list_ops; print(bool(list_ops('tabular.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return out.stdout.strip() == "True"


def test_twinpipe_run_cli(tmp_path: Path) -> None:
    if not _registered_in_a_fresh_process():  # the op registry's built-in families must list tabular
        pytest.skip("twinpipe.ops.tabular is not among the registry's built-in op families yet")
    raw = _requests()
    np.save(tmp_path / "age.npy", raw["age"])
    np.save(tmp_path / "item_id.npy", raw["item_id"])
    args = ["run", "tabular_features", "-i", f"age=@{tmp_path / 'age.npy'}", "-i", f"item_id=@{tmp_path / 'item_id.npy'}"]
    for v in raw["country"]:
        args += ["-i", f"country={v.decode('utf-8', 'replace')}"]
    raw["country"][4] = "\ufffd\ufffd".encode()  # what a command line can carry
    exe = Path(sys.executable).with_name("twinpipe")
    result = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = {k: np.asarray(v["data"], v["dtype"]).reshape(v["shape"]) for k, v in json.loads(result.stdout).items()}
    _check_outputs(out, raw)
