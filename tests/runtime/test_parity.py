"""``twinpipe parity`` on the shipped photographs: the training path (a DataLoader with workers) and
the serving path (the Engine in-process, a ``twinpipe serve`` over gRPC) agree bit for bit on every
intermediate tensor, and a real difference between them is caught, counted and fails the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e._server import Server
from twinpipe.dag import load_pipeline
from twinpipe.models import load_repository
from twinpipe.pipelines import asset_path, models_dir, pipelines_dir
from twinpipe.runtime._parity import ParityError, ParityResult, ParityRow, compare, parity, render

ASSETS = asset_path("coffee.jpg").parent
PHOTOS = sorted(p for p in ASSETS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"))
OTHERS = sorted(p for p in ASSETS.iterdir() if p.is_file() and p not in PHOTOS and not p.name.startswith("."))
STD_RED = 0.229  # imagenet_preprocess's std for the red channel (the op's default)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server(None)  # the shipped repository
    yield s
    s.stop()


def _step_outputs(name: str) -> list[str]:
    """Every declared output of every step of a shipped pipeline (none of them has train-only steps)."""
    pipe = load_pipeline(name, models=load_repository(models_dir()).model_infos())
    assert all(s.spec.mode in (None, "serve") for s in pipe.valid.steps)
    return [f"{s.name}.{o}" for s in pipe.valid.steps for o in s.outputs]


def _rows(result: ParityResult, path: str) -> dict[str, ParityRow]:
    return {r.tensor: r for r in result.rows if r.path == path}


def _variant(tmp_path: Path, name: str, red_mean: float) -> Path:
    """A copy of a shipped pipeline, same name, whose normalisation subtracts another red mean."""
    text = (pipelines_dir() / f"{name}.yaml").read_text()
    old = "params: {size: 256, crop: 224}" if name == "imagenet_preprocess" else "params: {size: 64, crop: 64}"
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, old[:-1] + f", mean: [{red_mean!r}, 0.456, 0.406]}}"))
    return path


def test_imagenet_preprocess_agrees_bit_for_bit_on_every_file_of_the_assets_folder() -> None:
    result = parity("imagenet_preprocess", ASSETS, workers=2)
    assert result.ok and result.exit_code == 0, render(result)
    steps = _rows(result, "in-process")
    assert list(steps) == _step_outputs("imagenet_preprocess") == ["decode.image", "pre.tensor"]
    for row in result.rows:
        assert (row.samples, row.mismatched, row.max_abs_diff, row.problems) == (len(PHOTOS), 0, 0.0, [])
    # every pixel of every photo was compared: decode's output is each photo's H × W × 3
    assert steps["decode.image"].total == sum(3 * w * h for w, h in (Image.open(p).size for p in PHOTOS))
    assert steps["pre.tensor"].total == _rows(result, "Engine.infer")["pixels"].total == len(PHOTOS) * 3 * 224 * 224
    # the folder's other files are not images: every path refuses them, and that is no mismatch
    assert [n.split(":")[0] for n in result.notes] == [str(p) for p in OTHERS]
    text = render(result)
    assert all(t in text for t in ("decode.image", "pre.tensor", "pixels", "Engine.infer")) and "OK:" in text


def test_classify_color_agrees_bit_for_bit_through_the_model_and_labels() -> None:
    result = parity("classify_color", [ASSETS / "*.jpg", ASSETS / "*.png"], workers=2)
    assert result.ok, render(result)
    assert result.files == [str(p) for suffix in (".jpg", ".png") for p in PHOTOS if p.suffix == suffix]  # glob by glob
    steps = _rows(result, "in-process")
    assert list(steps) == _step_outputs("classify_color")
    assert set(_rows(result, "Engine.infer")) == {"labels", "scores"}
    assert {r.samples for r in result.rows} == {len(result.files)}
    assert steps["names.labels"].dtype == "BYTES" and steps["names.labels"].total == 3 * len(result.files)
    assert steps["model.logits"].total == 12 * len(result.files)


def test_a_different_normalisation_on_the_serving_side_is_caught(tmp_path: Path) -> None:
    rng = np.random.default_rng()
    delta = float(rng.uniform(0.01, 0.2))
    served = _variant(tmp_path, "imagenet_preprocess", 0.485 + delta)
    result = parity("imagenet_preprocess", PHOTOS, serving_pipeline=served, workers=1)
    assert not result.ok and result.exit_code == 1, f"delta {delta}"
    steps, outputs = _rows(result, "in-process"), _rows(result, "Engine.infer")
    assert steps["decode.image"].ok  # the step before the change still agrees
    red = len(PHOTOS) * 224 * 224  # every red value, and no other, moved by delta / std
    for row in (steps["pre.tensor"], outputs["pixels"]):
        assert row.mismatched == red and row.total == 3 * red, f"delta {delta}"
        assert row.max_abs_diff == pytest.approx(delta / STD_RED, rel=1e-4)
    assert "MISMATCH" in render(result) and str(served) in render(result)
    # a tolerance above the difference lets it pass; the integers still compare exactly
    loose = parity("imagenet_preprocess", PHOTOS[:2], serving_pipeline=served, workers=0, atol=1.01 * delta / STD_RED)
    assert loose.ok, render(loose)


def test_outputs_over_grpc_agree_with_the_training_path(server: Server) -> None:
    result = parity("classify_color", PHOTOS, server=server.grpc)
    assert result.ok, render(result)
    wire = _rows(result, "gRPC")
    assert set(wire) == {"labels", "scores"} and {r.samples for r in wire.values()} == {len(PHOTOS)}
    assert wire["labels"].total == wire["scores"].total == 3 * len(PHOTOS)
    assert "gRPC" in render(result)


def test_a_server_serving_another_pipeline_differs_over_the_wire_only(tmp_path: Path, server: Server) -> None:
    # trained with a variant; the server serves the shipped pipeline: in-process the variant agrees
    # with itself, while its scores disagree with what the server answers
    trained = _variant(tmp_path, "classify_color", 0.485 + float(np.random.default_rng().uniform(0.05, 0.3)))
    result = parity(trained, PHOTOS[:3], server=server.grpc, workers=0)
    assert all(r.ok for r in result.rows if r.path != "gRPC"), render(result)
    assert _rows(result, "gRPC")["scores"].mismatched > 0 and result.exit_code == 1


def test_compare_on_a_real_output() -> None:
    pixels = load_pipeline("imagenet_preprocess")(image=asset_path("chelsea.jpg").read_bytes())["pixels"]
    rng = np.random.default_rng()
    i = tuple(int(rng.integers(0, n)) for n in pixels.shape)
    assert compare(pixels, pixels.copy()).mismatched == 0
    nudged = pixels.copy()
    nudged[i] = np.nextafter(nudged[i], np.float32(np.inf))  # one ulp
    d = compare(pixels, nudged)
    assert (d.mismatched, d.total) == (1, pixels.size) and d.max_abs_diff == pytest.approx(abs(float(nudged[i]) - float(pixels[i])))
    assert compare(pixels, nudged, atol=1e-5).mismatched == 0
    a, b = pixels.copy(), pixels.copy()
    a[i] = b[i] = np.nan
    assert compare(a, b).mismatched == 0  # NaN matches NaN
    b[i] = 0.0
    one_nan = compare(a, b)
    assert one_nan.mismatched == 1 and one_nan.max_abs_diff is not None and np.isnan(one_nan.max_abs_diff)
    assert compare(pixels, pixels.astype(np.float64)).problem == "dtype float32 vs float64"
    assert "shape" in (compare(pixels, pixels[None]).problem or "")
    ids = rng.integers(2**60, 2**62, size=8)  # above 2**53, where float64 cannot tell n from n + 1
    ids_b = ids.copy()
    ids_b[int(rng.integers(0, 8))] += 1
    assert (compare(ids, ids_b).mismatched, compare(ids, ids_b).max_abs_diff) == (1, 1.0)
    labels = np.array([b"cat", b"dog"], dtype=object)
    assert compare(labels, np.array([b"cat", b"cow"], dtype=object)).mismatched == 1


@pytest.mark.parametrize(("pipeline", "data", "message"), [
    ("imagenet_preprocess", "EMPTY", "no files in the folder"),
    ("imagenet_preprocess", str(ASSETS / "*.tiff"), "no files match"),
    ("imagenet_preprocess", "NOWHERE", "no such file or folder"),
    ("no_such_pipeline", str(ASSETS), "no pipeline named 'no_such_pipeline'"),
    ("tabular_features", str(ASSETS), "one BYTES input"),
])
def test_what_cannot_run_is_a_parity_error(tmp_path: Path, pipeline: str, data: str, message: str) -> None:
    data = {"EMPTY": str(tmp_path), "NOWHERE": str(tmp_path / "nowhere")}.get(data, data)
    with pytest.raises(ParityError, match=message):
        parity(pipeline, data)
