"""Shared by the tabular op tests: the op testing kit, made to compare 0-d outputs.

A tabular op's sample is one value (a rank-0 array), so its outputs are 0-d. The kit's
``assert_close`` indexes its difference array, which NumPy returns as a scalar for 0-d operands;
where the kit still does that, ``kit_check`` compares 0-d outputs as one-element arrays (the same
values, dtype and tolerance). Once the kit handles 0-d outputs itself the shim does nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from twinpipe.ops.testing import _check


def _kit_handles_0d() -> bool:
    try:
        _check.assert_close(np.asarray(1.0), np.asarray(1.0), 0.0, "probe")
    except TypeError:
        return False
    return True


@pytest.fixture
def kit(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``check_op``, comparing 0-d outputs as 1-element arrays where the kit cannot yet."""
    if not _kit_handles_0d():
        original = _check.assert_close

        def assert_close(actual: Any, expected: Any, atol: float, what: str) -> None:
            original(np.atleast_1d(np.asarray(actual)), np.atleast_1d(np.asarray(expected)), atol, what)

        monkeypatch.setattr(_check, "assert_close", assert_close)
    return _check.check_op
