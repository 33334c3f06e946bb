"""The shipped pipelines: found by name, valid, and producing what their names promise."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from twinpipe.dag import load_pipeline
from twinpipe.models import load_repository
from twinpipe.ops import image
from twinpipe.pipelines import asset_path, models_dir, shipped_pipelines

PHOTOS = ["coffee.jpg", "chelsea.jpg", "astronaut.jpg"]


def test_shipped_pipelines_are_found_by_name() -> None:
    assert {"imagenet_preprocess", "detection_letterbox", "classify_color"} <= set(shipped_pipelines())
    repo = load_repository(models_dir())  # the shipped models, for the pipelines with model steps
    assert repo.errors == {}
    for name in shipped_pipelines():
        assert load_pipeline(name, models=repo.model_infos()).spec.name == name


def test_imagenet_preprocess_is_the_torchvision_eval_transform_within_one_uint8_step() -> None:
    pipe = load_pipeline("imagenet_preprocess")
    tv = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    batch = [asset_path(p).read_bytes() for p in PHOTOS]
    out = pipe(image=batch)["pixels"]
    assert isinstance(out, np.ndarray)
    assert out.shape == (3, 3, 224, 224)
    assert out.dtype == np.float32
    for got, data in zip(out, batch):
        rgb = image.decode(data)
        want = tv(torch.from_numpy(rgb).permute(2, 0, 1)).numpy()
        # one uint8 step of the resize, divided by the smallest std, is the bound (see resize's doc)
        assert np.abs(got - want).max() <= 1 / 255 / 0.224 + 1e-5


def test_detection_letterbox_maps_boxes_back_to_the_photo() -> None:
    pipe = load_pipeline("detection_letterbox")
    for name in PHOTOS:
        data = asset_path(name).read_bytes()
        rgb = image.decode(data)
        out = pipe(image=data)
        assert out["pixels"].shape == (3, 640, 640)
        sx, sy = out["scale"]
        ox, oy = out["offset"]
        h, w = rgb.shape[:2]
        # the photo's corners land inside the 640 × 640 canvas, one side touching its edges
        x1, y1 = w * sx + ox, h * sy + oy
        assert ox >= 0 and oy >= 0 and x1 <= 640 + 1e-3 and y1 <= 640 + 1e-3
        assert min(abs(x1 - 640) + ox, abs(y1 - 640) + oy) < 1.0
        # the padding is grey (114) and the image area is the photo's content
        pixels = out["pixels"]
        if oy >= 1:
            np.testing.assert_allclose(pixels[:, 0, :], 114 / 255, atol=1e-6)
        centre = pixels[:, int(oy + h * sy / 2), int(ox + w * sx / 2)]
        np.testing.assert_allclose(centre, rgb[h // 2, w // 2] / 255, atol=0.15)
