"""The Pipeline API: load by path or name, call, select, types, stats, pickling, async."""

from __future__ import annotations

import asyncio
import pickle
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinpipe.dag._pipeline import DEFAULT_SEARCH_PATHS, Pipeline, find_pipeline, load_pipeline
from twinpipe.dag._plan import PlanError
from twinpipe.dag._resolved import ModelInfo
from twinpipe.dag._spec import Location, PipelineError, TensorDecl
from twinpipe.ops import image
from twinpipe.pipelines import asset_path

CLASSIFY = """
name: classify
inputs:
  image: {datatype: BYTES, shape: [-1]}
outputs:
  scores: {datatype: FP32, shape: [-1, 3], from: net.scores}
steps:
  decode: {op: image.decode, inputs: {data: image}}
  pre:
    op: image.resize_crop_normalize
    inputs: {image: decode.image}
    params: {size: 40, crop: 32}
  net:
    model: tiny
    inputs: {pixels: pre.tensor}
"""

PRE = """
name: pre
inputs:
  image: {datatype: BYTES, shape: [-1]}
outputs:
  pixels: {datatype: FP32, shape: [-1, 3, 32, 32], from: pre.tensor}
steps:
  decode: {op: image.decode, inputs: {data: image}}
  pre:
    op: image.resize_crop_normalize
    inputs: {image: decode.image}
    params: {size: 40, crop: 32}
"""

CALLS: list[int] = []


def _tiny(pixels: np.ndarray) -> dict[str, Any]:
    CALLS.append(1)
    return {"scores": pixels.mean(axis=(-1, -2))}


def _models(fn: Any = _tiny) -> dict[str, ModelInfo]:
    here = Location("tiny/config.yaml", 1, 1)
    return {"tiny": ModelInfo("tiny", (TensorDecl("pixels", "FP32", (-1, 3, 32, 32), here),),
                              (TensorDecl("scores", "FP32", (-1, 3), here),), fn)}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _jpeg(name: str = "coffee.jpg") -> bytes:
    return asset_path(name).read_bytes()


def _expected_pixels(data: bytes) -> np.ndarray:
    return image.resize_crop_normalize(image.decode(data), size=40, crop=32)


def test_load_by_path_and_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "pre", PRE)
    by_path = load_pipeline(path)
    by_name = load_pipeline("pre", search_paths=[tmp_path])
    assert by_path.name == by_name.name == "pre" and by_path.path == by_name.path == str(path)
    with pytest.raises(FileNotFoundError, match=r"no pipeline named 'pree' in .*; pipelines there: .*\bpre\b"):
        load_pipeline("pree", search_paths=[tmp_path])


def test_the_default_search_paths_can_be_extended(tmp_path: Path) -> None:
    _write(tmp_path, "pre", PRE)
    DEFAULT_SEARCH_PATHS.append(tmp_path)
    try:
        assert find_pipeline("pre") == (tmp_path / "pre.yaml").resolve()
        assert load_pipeline("pre").name == "pre"
    finally:
        DEFAULT_SEARCH_PATHS.remove(tmp_path)


def test_an_invalid_file_raises_the_validation_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad", PRE.replace("image.resize_crop_normalize", "image.resize_crop_normalise"))
    with pytest.raises(PipelineError, match=r"bad.yaml:\d+:\d+: step 'pre': unknown op"):
        load_pipeline(path)


def test_calling_a_pipeline_runs_it_in_serve_mode(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, "pre", PRE))
    data = _jpeg()
    out = pipe(image=data)
    assert list(out) == ["pixels"]
    np.testing.assert_array_equal(out["pixels"], _expected_pixels(data))
    np.testing.assert_array_equal(pipe.run({"image": data}, mode="serve")["pixels"], out["pixels"])
    assert pipe.stats is not None and set(pipe.stats.step_seconds) == {"decode", "pre"}


def test_inputs_and_outputs_say_names_and_types(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, "classify", CLASSIFY), models=_models())
    assert list(pipe.inputs) == ["image"] and pipe.inputs["image"].dtype == np.dtype(object)
    assert list(pipe.outputs) == ["scores"] and str(pipe.outputs["scores"]) == "float32[3]"
    pre = pipe.select(outputs=["pre.tensor"])
    assert list(pre.outputs) == ["pre.tensor"]
    assert pre.outputs["pre.tensor"] == pipe.valid.types["pre.tensor"]  # as static inference found it
    assert pre.outputs["pre.tensor"].dtype == np.float32 and pre.outputs["pre.tensor"].shape[1:] == (32, 32)


def test_select_runs_only_the_steps_the_outputs_need(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, "classify", CLASSIFY), models=_models())
    data = _jpeg("chelsea.jpg")
    CALLS.clear()
    full = pipe(image=data)
    assert CALLS == [1] and full["scores"].shape == (3,)
    pre = pipe.select(outputs=["pre.tensor"])
    out = pre(image=data)
    assert CALLS == [1]  # the model step did not run
    assert list(out) == ["pre.tensor"] and pre.stats is not None and pre.stats.steps == ("decode", "pre")
    np.testing.assert_array_equal(out["pre.tensor"], _expected_pixels(data))


def test_select_works_without_the_model_loaded(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, "classify", CLASSIFY), models=_models(fn=None))
    pre = pipe.select(outputs=["pre.tensor"])
    np.testing.assert_array_equal(pre(image=_jpeg())["pre.tensor"], _expected_pixels(_jpeg()))
    with pytest.raises(PlanError, match=r"step 'net': nothing runs model 'tiny' \(load the model first\)"):
        pipe(image=_jpeg())


def test_select_can_start_from_a_step_output(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, "pre", PRE))
    decoded = pipe.select(outputs=["pixels"], inputs=["decode.image"])
    assert list(decoded.inputs) == ["decode.image"]
    img = image.decode(_jpeg())
    np.testing.assert_array_equal(decoded.run({"decode.image": img})["pixels"], _expected_pixels(_jpeg()))


def test_a_bad_selection_fails_when_made(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, "pre", PRE))
    with pytest.raises(PlanError, match="has no output 'pre.pixels'"):
        pipe.select(outputs=["pre.pixels"])


def test_a_loaded_pipeline_pickles_as_its_file_and_selection(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, "classify", CLASSIFY), models=_models()).select(outputs=["pre.tensor"])
    blob = pickle.dumps(pipe)
    assert str(tmp_path / "classify.yaml").encode() in blob
    again = pickle.loads(blob)
    assert isinstance(again, Pipeline) and list(again.outputs) == ["pre.tensor"]
    np.testing.assert_array_equal(again(image=_jpeg())["pre.tensor"], pipe(image=_jpeg())["pre.tensor"])


def test_a_pipeline_built_in_code_pickles_as_its_spec(tmp_path: Path) -> None:
    valid = load_pipeline(_write(tmp_path, "pre", PRE)).valid
    pipe = Pipeline(valid)
    (tmp_path / "pre.yaml").unlink()  # nothing to reload from
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(again(image=_jpeg())["pixels"], pipe(image=_jpeg())["pixels"])


def test_run_async(tmp_path: Path) -> None:
    pipe = load_pipeline(_write(tmp_path, "pre", PRE))
    out = asyncio.run(pipe.run_async({"image": _jpeg("astronaut.jpg")}))
    np.testing.assert_array_equal(out["pixels"], _expected_pixels(_jpeg("astronaut.jpg")))


def test_a_pipeline_loaded_with_running_models_pickles_with_their_declarations_only() -> None:
    """Spawn workers pickle the transform: a loaded model (here a lambda; a TorchScript module in
    life) must not travel, and the cut pipeline must come back whole."""
    from twinpipe.models import load_repository
    from twinpipe.pipelines import models_dir

    infos = load_repository(models_dir()).model_infos()
    assert infos["shapes_net"].fn is not None
    with pytest.raises(RuntimeError, match="serialize"):  # what made spawn workers fail
        pickle.dumps(infos["shapes_net"].fn)
    pre = load_pipeline("classify", models=infos).select(outputs=["pre.tensor"])
    again = pickle.loads(pickle.dumps(pre))
    jpeg = asset_path("coffee.jpg").read_bytes()
    np.testing.assert_array_equal(np.asarray(again(image=jpeg)["pre.tensor"]), np.asarray(pre(image=jpeg)["pre.tensor"]))


def test_a_pipeline_error_crosses_process_boundaries_whole(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninputs: {x: {datatype: FP32, shape: [-1]}}\noutputs: {y: {datatype: FP32, shape: [-1], from: s.y}}\n"
                   "steps:\n  s: {op: image.flipp, inputs: {image: x}}\n")
    with pytest.raises(PipelineError) as info:
        load_pipeline(bad)
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.diagnostics == info.value.diagnostics
    assert "image.flipp" in str(again)
