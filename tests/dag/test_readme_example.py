"""README's pipeline example is real: it validates, but for the parts later issues deliver."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twinpipe.dag import PipelineError, check

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_pipeline_fails_only_on_the_model_step(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(# classify\.yaml.*?)```", README.read_text(), re.S)
    assert block is not None
    path = tmp_path / "classify.yaml"
    path.write_text(block.group(1))
    with pytest.raises(PipelineError) as info:
        check(path)
    messages = [d.message for d in info.value.diagnostics]
    steps = {d.step for d in info.value.diagnostics}
    assert steps == {"model"}, messages
    assert any("unknown model 'resnet18'" in m for m in messages)
