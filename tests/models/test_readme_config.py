"""README's model config examples are valid configs, and say what README says they do."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np

from twinpipe.models import BatchingPolicy, load_config
from twinpipe.runtime import Engine

README = Path(__file__).resolve().parents[2] / "README.md"


def _block(name: str, tmp_path: Path) -> Path:
    block = re.search(rf"```yaml\n(# models/{name}/config\.yaml.*?)```", README.read_text(), re.S)
    assert block is not None, f"README has no config block for {name}"
    path = tmp_path / name / "config.yaml"
    path.parent.mkdir()
    path.write_text(block.group(1))
    return path


def test_readme_model_config_validates(tmp_path: Path) -> None:
    config = load_config(_block("resnet18", tmp_path), folder_name="resnet18")
    assert config.name == "resnet18"
    assert config.max_batch_size == 32
    assert [d.name for d in config.inputs] == ["input"]
    assert config.instance_count == 2
    assert config.dynamic_batching is not None
    policy = BatchingPolicy.from_section(config.dynamic_batching, config.max_batch_size)
    assert (policy.max_queue_delay_us, policy.preferred_batch_sizes, policy.max_queue_size) == (500, (16, 32), 256)
    assert (policy.timeout_us, policy.priority_levels, policy.priority, policy.preserve_ordering) == (100000, 2, 2, False)


def test_readme_sequence_config_validates(tmp_path: Path) -> None:
    config = load_config(_block("streaming_gru", tmp_path), folder_name="streaming_gru")
    assert config.sequence_batching is not None and config.sequence_batching["strategy"] == "oldest"
    assert [(d.name, d.shape) for d in config.model_inputs] == [("frame", (40,)), ("h", (64,))]
    assert [d.name for d in config.model_outputs] == ["scores", "h_next"]


def test_readme_streaming_model_streams(tmp_path: Path) -> None:
    config = load_config(_block("count", tmp_path), folder_name="count")
    assert config.decoupled and config.backend == "python"
    code = re.search(r"```python\n# models/count/1/m\.py\n(.*?)```", README.read_text(), re.S)
    assert code is not None, "README has no m.py for the count model"
    (tmp_path / "count" / "1").mkdir()
    (tmp_path / "count" / "1" / "m.py").write_text(code.group(1))
    engine = Engine(tmp_path)

    async def main() -> list[int]:
        return [int(r.outputs["k"][0]) async for r in engine.stream("count", {"n": np.array([4], np.int32)})]

    try:
        assert asyncio.run(main()) == [1, 2, 3, 4]
    finally:
        engine.close()
