"""Shared by the tabular op tests."""

from __future__ import annotations

from typing import Any

import pytest

from twinpipe.ops.testing import check_op


@pytest.fixture
def kit() -> Any:
    """The op testing kit (it compares the 0-d outputs of per-value tabular ops)."""
    return check_op
