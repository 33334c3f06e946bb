"""README's model config example is a valid config."""

from __future__ import annotations

import re
from pathlib import Path

from twinpipe.models import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_model_config_validates(tmp_path: Path) -> None:
    block = re.search(r"```yaml\n(# models/resnet18/config\.yaml.*?)```", README.read_text(), re.S)
    assert block is not None
    path = tmp_path / "resnet18" / "config.yaml"
    path.parent.mkdir()
    path.write_text(block.group(1))
    config = load_config(path, folder_name="resnet18")
    assert config.name == "resnet18"
    assert config.max_batch_size == 32
    assert [d.name for d in config.inputs] == ["input"]
