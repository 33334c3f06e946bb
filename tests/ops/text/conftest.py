"""Shared by the text op tests: the real multilingual corpus (``twinpipe.ops.testing.corpora``)
and the real vocab."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinpipe.ops.testing.corpora import cldr_corpus
from twinpipe.pipelines import asset_path


@pytest.fixture(scope="session")
def corpus() -> tuple[str, ...]:
    return cldr_corpus()


@pytest.fixture(scope="session")
def vocab() -> str:
    return str(asset_path("wordpiece_cldr.txt"))


@pytest.fixture(scope="session")
def vocab_file() -> Path:
    return asset_path("wordpiece_cldr.txt")
