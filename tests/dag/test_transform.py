"""Training reuse: the DataLoader gives what the server gives, bit for bit; reproducible augmentation."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from twinpipe.dag._pipeline import Pipeline, load_pipeline
from twinpipe.dag._transform import BatchTransform, PipelineDataset, Transform, sample_seed
from twinpipe.ops import image
from twinpipe.pipelines import asset_path

PHOTOS = ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")

AUGMENT = """
name: imagenet_train
inputs:
  image: {datatype: BYTES, shape: [-1]}
outputs:
  pixels: {datatype: FP32, shape: [-1, 3, 224, 224], from: chw.image}
steps:
  decode: {op: image.decode, inputs: {data: image}}
  crop: {op: image.random_resized_crop, inputs: {image: decode.image}, params: {size: 224}}
  flip: {op: image.random_flip, inputs: {image: crop.image}}
  norm:
    op: image.normalize
    inputs: {image: flip.image}
    params: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
  chw: {op: image.layout, inputs: {image: norm.image}}
"""

FUSED = """
name: imagenet_fused
inputs:
  image: {datatype: BYTES, shape: [-1]}
outputs:
  pixels: {datatype: FP32, shape: [-1, 3, 224, 224], from: pre.tensor}
steps:
  decode: {op: image.decode, inputs: {data: image}}
  pre: {op: image.resize_crop_normalize, inputs: {image: decode.image}, params: {size: 256, crop: 224}}
"""


def _load(tmp_path: Path, text: str) -> Pipeline:
    path = tmp_path / "pipe.yaml"
    path.write_text(textwrap.dedent(text))
    return load_pipeline(path)


def _photos() -> list[bytes]:
    return [asset_path(n).read_bytes() for n in PHOTOS]


def _served(pipe: Pipeline, data: bytes) -> torch.Tensor:
    """What the serving path's executor makes of these bytes."""
    return torch.from_numpy(pipe.run({"image": data}, mode="serve")["pixels"])


def _loader_tensors(ds: PipelineDataset, workers: int, context: str | None = None) -> list[torch.Tensor]:
    loader = DataLoader(ds, batch_size=1, num_workers=workers, multiprocessing_context=context)
    return [batch[0] for batch in loader]


@pytest.mark.parametrize("text", [AUGMENT, FUSED], ids=["augment", "fused"])
def test_a_dataloader_in_serve_mode_gives_the_servers_tensors_bit_for_bit(tmp_path: Path, text: str) -> None:
    pipe = _load(tmp_path, text)
    photos = _photos()
    got = _loader_tensors(pipe.dataset(photos, mode="serve"), workers=2, context="fork")
    assert len(got) == 3
    for tensor, data in zip(got, photos):
        assert tensor.dtype == torch.float32 and tensor.shape == (3, 224, 224)
        assert torch.equal(tensor, _served(pipe, data))


def test_the_parity_holds_in_spawned_workers(tmp_path: Path) -> None:
    pipe = _load(tmp_path, AUGMENT)
    photos = _photos()
    got = _loader_tensors(pipe.dataset(photos, mode="serve"), workers=2, context="spawn")
    assert len(got) == len(photos) == 3
    for tensor, data in zip(got, photos):
        assert torch.equal(tensor, _served(pipe, data))


def test_a_batch_of_bytes_through_the_executor_equals_the_samples_one_by_one(tmp_path: Path) -> None:
    # serving batches requests: a list of encoded images must give what each gives alone
    pipe = _load(tmp_path, FUSED)
    photos = _photos()
    batch = pipe.run({"image": photos}, mode="serve")
    (name,) = batch
    assert len(batch[name]) == len(photos)
    for row, data in zip(batch[name], photos):
        np.testing.assert_array_equal(np.asarray(row), np.asarray(pipe.run({"image": data}, mode="serve")[name]))


def test_train_mode_is_reproducible_across_worker_counts_and_differs_across_epochs(tmp_path: Path) -> None:
    pipe = _load(tmp_path, AUGMENT)
    ds = pipe.dataset(_photos(), mode="train", seed=5)
    inline = _loader_tensors(ds, workers=0)
    two = _loader_tensors(ds, workers=2, context="fork")
    assert len(inline) == len(two) == 3
    assert all(torch.equal(a, b) for a, b in zip(inline, two))
    ds.set_epoch(1)
    next_epoch = _loader_tensors(ds, workers=2)
    assert len(next_epoch) == 3
    assert not any(torch.equal(a, b) for a, b in zip(inline, next_epoch))
    ds.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(inline, _loader_tensors(ds, workers=2)))


def test_each_sample_draws_from_seed_epoch_and_index(tmp_path: Path) -> None:
    pipe = _load(tmp_path, AUGMENT)
    t = pipe.transform(mode="train", seed=3)
    data = _photos()[1]
    got = t(data, index=7, epoch=2)
    want = pipe.run({"image": data}, mode="train", rng=sample_seed(3, 2, 7))["pixels"]
    assert isinstance(got, torch.Tensor) and torch.equal(got, torch.from_numpy(want))
    assert sample_seed(3, 2, 7) != sample_seed(3, 7, 2)  # a hash, not a sum


def test_serve_mode_is_deterministic_without_an_index(tmp_path: Path) -> None:
    pipe = _load(tmp_path, AUGMENT)
    t = pipe.transform(mode="serve")
    data = _photos()[0]
    assert torch.equal(t(data), t(data)) and torch.equal(t(data), _served(pipe, data))


def test_a_transform_pickles_and_passes_labels_through(tmp_path: Path) -> None:
    pipe = _load(tmp_path, FUSED)
    t = pickle.loads(pickle.dumps(pipe.transform(mode="train", seed=1)))
    assert isinstance(t, Transform) and t.mode == "train" and t.seed == 1
    ds = PipelineDataset([(data, i) for i, data in enumerate(_photos())], t)
    tensor, label = ds[2]
    assert label == 2 and torch.equal(tensor, _served(pipe, _photos()[2]))  # no random step: as served


def test_several_outputs_come_back_as_a_dict(tmp_path: Path) -> None:
    pipe = _load(tmp_path, AUGMENT)
    t = pipe.transform(mode="serve", outputs=["decode.image", "pixels"])
    data = _photos()[0]
    out = t({"image": data})
    assert set(out) == {"decode.image", "pixels"}
    assert torch.equal(out["decode.image"], torch.from_numpy(image.decode(data)))
    assert torch.equal(out["pixels"], _served(pipe, data))


def test_a_batch_transform_runs_on_a_collated_uint8_batch(tmp_path: Path) -> None:
    pipe = _load(tmp_path, AUGMENT)
    decoded = [image.random_resized_crop(image.decode(d), size=256, mode="serve") for d in _photos()]
    batch = torch.from_numpy(np.stack(decoded))  # N H W C uint8, as the default collate makes it
    serve = pipe.batch_transform(mode="serve", inputs=["decode.image"])
    assert isinstance(serve, BatchTransform) and list(serve.pipeline.inputs) == ["decode.image"]
    out = serve(batch)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 3, 224, 224) and out.dtype == torch.float32
    for row, img in zip(out, decoded):
        want = pipe.select(["pixels"], inputs=["decode.image"]).run({"decode.image": img})["pixels"]
        assert torch.equal(row, torch.from_numpy(want))
    train = pipe.batch_transform(mode="train", seed=9, inputs=["decode.image"])
    first, second = train(batch), train(batch)  # steps 0 and 1
    assert not torch.equal(first, second)
    assert torch.equal(train(batch, step=0), first)
    train.set_step(1)
    assert torch.equal(train(batch), second)
