"""How tabular ops take columns: shapes, ragged lists, torch, NumPy strings, pickling, workers."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from twinpipe.ops import InputError, OpError, get_op
from twinpipe.ops import tabular as tb

ALL = [tb.standardize, tb.min_max_scale, tb.log1p, tb.clip, tb.bucketize, tb.fill_missing,
       tb.hash_bucket, tb.vocab_lookup, tb.one_hot, tb.multi_hot]


def test_every_op_is_registered_by_its_dotted_name() -> None:
    for op in ALL:
        assert get_op(op.name) is op
        assert op.name.startswith("tabular.") and "Kernels: cpu" in op.describe()


def test_a_column_is_one_kernel_call_of_any_shape() -> None:
    rng = np.random.default_rng()
    x = rng.standard_normal((4, 5)).astype(np.float32)
    z = tb.standardize(x, mean=1.0, std=2.0)
    assert z.shape == (4, 5)
    np.testing.assert_array_equal(z.ravel(), tb.standardize(x.ravel(), mean=1.0, std=2.0))
    np.testing.assert_array_equal(tb.standardize(x[:, ::2], mean=1.0, std=2.0), z[:, ::2])  # a strided view
    one = tb.standardize(np.float32(3.0), mean=1.0, std=2.0)  # a NumPy scalar is a 0-d column
    assert one.shape == () and one.dtype == np.float32 and float(one) == 1.0
    assert tb.one_hot(np.array([[0, 1]]), depth=3).shape == (1, 2, 3)


def test_a_list_is_a_ragged_batch_of_columns() -> None:
    got = tb.hash_bucket([b"a", b"b", np.array([b"a", b"b"], object)], num_buckets=100)
    assert isinstance(got, list) and len(got) == 3
    assert got[0].shape == () and got[2].tolist() == [int(got[0]), int(got[1])]
    ragged = tb.multi_hot([np.array([0, 1]), np.array([2, 2, 2])], depth=3)
    assert [r.tolist() for r in ragged] == [[1, 1, 0], [0, 0, 1]]
    with pytest.raises(InputError, match=r"tabular.log1p: input 'x' has dtype object.*\(batch item 1 of 2\)"):
        tb.log1p([np.ones(2), np.array([b"x"], object)])


def test_numpy_fixed_width_strings_and_torch_tensors() -> None:
    s = np.array(["de", "日本"])  # NumPy unicode
    b = np.array([b"de", b"xx"])  # NumPy bytes
    obj = np.array([b"de", "日本".encode()], object)
    np.testing.assert_array_equal(tb.hash_bucket(s, num_buckets=1000), tb.hash_bucket(obj, num_buckets=1000))
    assert tb.vocab_lookup(b, vocabulary=["xx", "de"]).tolist() == [1, 0]
    t = tb.bucketize(torch.tensor([0.5, 2.5]), boundaries=[1.0, 2.0])
    assert isinstance(t, torch.Tensor) and t.tolist() == [0, 2]


def test_bad_inputs_name_the_op_and_input() -> None:
    with pytest.raises(InputError, match="tabular.standardize: input 'x' must be an array .*, got float"):
        tb.standardize(1.5, mean=0.0, std=1.0)
    with pytest.raises(InputError, match="tabular.clip: input 'x'.*bfloat16"):
        tb.clip(torch.ones(2, dtype=torch.bfloat16), min=0.0)
    with pytest.raises(InputError, match="tabular.log1p takes 1 input"):
        tb.log1p.bind()(np.ones(1), np.ones(1))
    with pytest.raises(OpError, match="tabular.log1p: mode must be 'train' or 'serve'"):
        tb.log1p(np.ones(1), mode="eval")
    assert tb.log1p(np.ones(1), mode="serve").tolist() == tb.log1p(np.ones(1), mode="train").tolist()


def _stats_file(tmp_path: Path) -> str:
    col = np.empty(3, object)
    col[:] = [b"a", b"b", b"a"]
    return str(tb.save_stats(tb.fit({"age": np.array([20.0, 30.0, 40.0]), "s": col}), tmp_path / "stats.json"))


def test_bound_ops_pickle_and_read_the_stats_file_again(tmp_path: Path) -> None:
    path = _stats_file(tmp_path)
    bound = tb.vocab_lookup.bind(stats=path, feature="s", num_oov=2)
    again = pickle.loads(pickle.dumps(bound))
    col = np.array([b"b", b"a", b"z"], object)
    assert again(col).tolist() == bound(col).tolist() == [1, 0, int(bound(col)[2])]
    assert type(again) is type(bound) and again.params == bound.params


def test_dataloader_workers_spawned_read_the_same_file(tmp_path: Path) -> None:
    path = _stats_file(tmp_path)
    rows: Any = [np.arange(3.0) + 20 + 3 * i for i in range(4)]
    loader: DataLoader[Any] = DataLoader(rows, batch_size=2, num_workers=1, multiprocessing_context="spawn",
                        collate_fn=tb.standardize.bind(stats=path, feature="age"))
    got = [z for batch in loader for z in batch]
    std = float(np.std([20.0, 30.0, 40.0]))
    for z, x in zip(got, rows):
        np.testing.assert_array_equal(z, tb.standardize(x, mean=30.0, std=std))
