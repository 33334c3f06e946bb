"""The classification ops' CUDA kernels against their references (on the GPU when there is one,
else in Numba's CUDA simulator): rows of random logits with NaN, ±inf and huge values, as one
sample and as a dense batch."""

from __future__ import annotations

import os

import numpy as np
import pytest
from numba import cuda

from twinpipe.ops import Op, classify
from twinpipe.ops.testing import check_op

pytestmark = pytest.mark.skipif(not cuda.is_available(), reason="no CUDA device and no simulator")


@pytest.mark.parametrize("op", [classify.softmax, classify.log_softmax, classify.sigmoid, classify.topk], ids=lambda op: op.name)
def test_the_cuda_kernel_matches_the_reference(op: Op) -> None:
    report = check_op(op, devices=("cuda",), cases=1)  # the simulator is slow: one fresh case per dtype a run
    assert report.cases.get("cuda/float32") == 1 and report.cases.get("cuda/float64") == 1, report


def test_a_batch_of_rows_with_non_finite_logits_follows_the_rules() -> None:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    rows = (rng.standard_normal((5, 37)) * 50).astype(np.float32)
    rows[1, 3] = np.nan
    rows[2, :] = -np.inf
    rows[3, [4, 9]] = np.inf
    rows[4, 0] = 1e4
    got = classify.softmax(cuda.to_device(rows)).copy_to_host()
    want = classify.softmax(rows)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all() and got[3, 4] == got[3, 9] == 0.5 and got[4, 0] == 1.0


def test_topk_of_a_batch_with_ties_and_nan_matches_the_cpu() -> None:
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    rows = np.round(rng.standard_normal((4, 50)) * 2).astype(np.float32)  # few distinct values: ties
    rows[0, [7, 30]] = np.nan
    rows[1, 5] = -0.0
    rows[2, 11] = np.inf
    values, indices = classify.topk(cuda.to_device(rows), k=9)
    want = classify.topk(rows, k=9)
    np.testing.assert_array_equal(indices.copy_to_host(), want.indices)
    np.testing.assert_array_equal(values.copy_to_host(), want.values)
    assert list(want.indices[0, :2]) == [7, 30]  # NaN first, in index order
