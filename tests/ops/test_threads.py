"""Row-band parallelism for CPU kernels."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from twinpipe.ops import get_num_threads, set_num_threads
from twinpipe.ops._threads import parallel_rows


@pytest.fixture(autouse=True)
def _restore_threads() -> None:
    before = get_num_threads()
    yield
    set_num_threads(before)


@pytest.mark.parametrize(("threads", "rows"), [(1, 100), (2, 100), (3, 97), (4, 5), (2, 1)])
def test_bands_cover_every_row_once(threads: int, rows: int) -> None:
    set_num_threads(threads)
    hits = np.zeros(rows, np.int64)
    bands = min(threads, max(1, rows // 4))
    together = threading.Barrier(bands, timeout=10)  # passes only if all bands run at once

    def band(out: np.ndarray, start: int, stop: int) -> None:
        together.wait()
        out[start:stop] += 1

    parallel_rows(band, rows, hits, min_rows=4)
    np.testing.assert_array_equal(hits, np.ones(rows, np.int64))


def test_thread_count_is_validated() -> None:
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="expected a positive integer"):
            set_num_threads(bad)  # type: ignore[arg-type]


def test_errors_in_a_band_propagate() -> None:
    set_num_threads(2)

    def band(start: int, stop: int) -> None:
        if start > 0:
            raise RuntimeError(f"band {start}:{stop} failed")

    with pytest.raises(RuntimeError, match="band 50:100 failed"):
        parallel_rows(band, 100)
