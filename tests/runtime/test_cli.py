"""The ``twinpipe`` command: ``ops`` and ``demo`` (the README's main job)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from twinpipe.ops import image, list_ops
from twinpipe.pipelines import asset_path
from twinpipe.runtime.cli import main


def test_ops_lists_every_registered_op(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list_ops()
    assert {"image.decode", "image.resize", "image.resize_crop_normalize", "image.letterbox"} <= set(listed)


def test_ops_describes_one_op(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops", "image.flip"]) == 0
    assert capsys.readouterr().out.strip() == image.flip.describe()


def test_ops_unknown_name_is_an_error_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops", "image.resiz"]) == 1
    assert "unknown op 'image.resiz'; did you mean image.resize" in capsys.readouterr().err


def test_demo_runs_the_ops_over_the_shipped_photo_and_writes_images(tmp_path: Path) -> None:
    # the console script, as README's `make run` calls it
    exe = Path(sys.executable).with_name("twinpipe")
    result = subprocess.run([str(exe), "demo", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert str(asset_path("coffee.jpg")) in out
    h, w = image.decode(asset_path("coffee.jpg").read_bytes()).shape[:2]
    assert re.search(rf"image.decode \(rgb, EXIF upright\) +\[{h}, {w}, 3\] +uint8", out)
    assert re.search(r"image.resize_crop_normalize \(fused\) +\[3, 224, 224\] +float32", out)
    diff = float(out.split("max |fused - unfused chain| = ")[1].split()[0])
    assert diff <= 1e-5
    decoded = cv2.imread(str(tmp_path / "decoded.png"), cv2.IMREAD_COLOR_RGB)
    np.testing.assert_array_equal(decoded, image.decode(asset_path("coffee.jpg").read_bytes()))
    assert (tmp_path / "letterbox.png").is_file()


def test_demo_on_a_bad_file_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(asset_path("coffee.jpg").read_bytes()[:500])
    assert main(["demo", str(bad)]) == 1
    assert "cannot decode" in capsys.readouterr().out


ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "dag" / "corpus"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("twinpipe")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_validate_reports_every_error_with_file_line_and_step_and_exits_1() -> None:
    result = _cli("validate", str(CORPUS / "cycle.yaml"), str(ROOT / "pipelines" / "imagenet_preprocess.yaml"))
    assert result.returncode == 1
    assert f"{CORPUS / 'cycle.yaml'}:10:3: step 'a': the steps form a cycle: a → b → a" in result.stderr
    assert "imagenet_preprocess.yaml: ok — pipeline 'imagenet_preprocess', 2 steps" in result.stdout
    assert "Traceback" not in result.stderr
    ok = _cli("validate", *(str(p) for p in sorted((ROOT / "pipelines").glob("*.yaml"))))
    assert ok.returncode == 0, ok.stderr


def test_run_writes_json_and_npz_equal_to_the_pipeline(tmp_path: Path) -> None:
    from twinpipe.dag import load_pipeline

    photo = asset_path("chelsea.jpg")
    want = load_pipeline("imagenet_preprocess")(image=photo.read_bytes())["pixels"]
    result = _cli("run", "imagenet_preprocess", "--input", f"image=@{photo}")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)["pixels"]
    assert got["shape"] == [3, 224, 224]
    assert got["dtype"] == "float32"
    np.testing.assert_array_equal(np.asarray(got["data"], np.float32), want)
    out = tmp_path / "o.npz"
    result = _cli("run", str(ROOT / "pipelines" / "imagenet_preprocess.yaml"), "-i", f"image=@{photo}", "--output", "npz", "--out", str(out))
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(out)["pixels"], want)


def test_run_a_pipeline_with_a_gpu_step_prints_it_from_the_host(tmp_path: Path) -> None:
    """A step on the GPU leaves its output there; `twinpipe run` copies it back before writing it.
    On a GPU that output is a torch CUDA tensor, which NumPy cannot read (bench/gpu_check.sh runs this
    there); here the CLI inherits NUMBA_ENABLE_CUDASIM from the tests and the step runs simulated."""
    path = tmp_path / "gpu.yaml"
    path.write_text("name: gpu\ninputs:\n  image: {datatype: BYTES, shape: [-1]}\noutputs:\n"
                    "  flipped: {datatype: UINT8, shape: [-1, -1, -1, 3], from: flip.image}\nsteps:\n"
                    "  decode: {op: image.decode, inputs: {data: image}}\n"
                    "  flip: {op: image.flip, device: cuda, inputs: {image: decode.image}, params: {axis: both}}\n")
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    photo = tmp_path / "x.png"
    photo.write_bytes(cv2.imencode(".png", rng.integers(0, 256, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8))[1])
    result = _cli("run", str(path), "-i", f"image=@{photo}")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)["flipped"]
    want = image.flip(image.decode(photo.read_bytes()), axis="both")
    assert got["shape"] == list(want.shape)
    np.testing.assert_array_equal(np.asarray(got["data"], np.uint8), want)


def test_run_in_train_mode_is_seeded(tmp_path: Path) -> None:
    pipe = tmp_path / "aug.yaml"
    pipe.write_text(
        "name: aug\ninputs:\n  image: {datatype: BYTES, shape: [-1]}\n"
        "outputs:\n  crop: {datatype: UINT8, shape: [-1, 32, 32, 3], from: rrc.image}\n"
        "steps:\n  decode: {op: image.decode, inputs: {data: image}}\n"
        "  rrc: {op: image.random_resized_crop, inputs: {image: decode.image}, params: {size: 32}}\n"
    )
    photo = asset_path("coffee.jpg")
    runs = [_cli("run", str(pipe), "-i", f"image=@{photo}", "--mode", "train", "--seed", str(s)) for s in (1, 1, 2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    a, b, c = (json.loads(r.stdout)["crop"]["data"] for r in runs)
    assert a == b
    assert a != c


def test_run_user_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    photo = asset_path("coffee.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(photo.read_bytes()[:300])
    cases = [
        (("run", "no_such_pipeline", "-i", "image=x"), "no pipeline named 'no_such_pipeline'"),
        (("run", "imagenet_preprocess", "-i", "img=@x"), "the pipeline has no input 'img'; its inputs are image"),
        (("run", "imagenet_preprocess"), "missing --input for image"),
        (("run", "imagenet_preprocess", "-i", f"image=@{tmp_path / 'nope.jpg'}"), "no such file"),
        (("run", "imagenet_preprocess", "-i", f"image=@{bad}"), "step 'decode' (op image.decode)"),
        (("run", "imagenet_preprocess", "-i", f"image=@{photo}", "--output", "npz"), "give --out FILE.npz"),
        (("graph", "imagenet_preprocess", "--format", "png"), "give --out FILE.png"),
        (("validate", str(tmp_path / "missing.yaml")), "cannot read"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


def test_graph_draws_the_dag_in_three_formats(tmp_path: Path) -> None:
    mermaid = _cli("graph", "detection_letterbox")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD")
    assert 'n_decode["decode<br/>op: image.decode"]' in mermaid.stdout
    assert '-->|"box.image uint8[640 640 3]"| n_scaled' in mermaid.stdout
    dot = _cli("graph", "detection_letterbox", "--format", "dot")
    assert dot.stdout.startswith('digraph "detection_letterbox"')
    assert 'n_box -> n_output_3a_scale [label="box.scale"' in dot.stdout
    png = tmp_path / "g.png"
    result = _cli("graph", "detection_letterbox", "--format", "png", "--out", str(png))
    assert result.returncode == 0, result.stderr
    picture = cv2.imread(str(png))
    assert picture is not None
    assert picture.shape[0] > 400
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 10  # boxes, text and arrows, not a blank page


def test_ops_json_lists_signatures_and_param_schemas() -> None:
    result = _cli("ops", "--json")
    assert result.returncode == 0, result.stderr
    ops = {o["name"]: o for o in json.loads(result.stdout)}
    assert set(ops) == {n for n in list_ops() if not n.startswith("test")}  # tests register test* ops in-process
    resize = ops["image.resize"]
    assert resize["signature"] == image.resize.signature
    params = {p["name"]: p for p in resize["params"]}
    assert params["interpolation"]["schema"] == {"enum": ["nearest", "bilinear", "bicubic", "area"]}
    assert params["size"]["required"] is True
    assert ops["image.random_flip"]["random"] is True
    assert ops["image.flip"]["kernels"] == ["cpu", "cuda"] and ops["image.rotate90"]["kernels"] == ["cpu"]


def test_schema_is_a_json_schema_the_shipped_pipelines_satisfy() -> None:
    import jsonschema
    import yaml

    result = _cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in (ROOT / "pipelines").glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "outputs": {}, "steps": {"a": {"op": "image.flip", "parms": {}}}}, schema)


def test_every_command_has_help() -> None:
    for command in ("validate", "run", "graph", "ops", "schema", "demo"):
        result = _cli(command, "--help")
        assert result.returncode == 0
        assert f"usage: twinpipe {command}" in result.stdout


def test_more_user_errors_without_tracebacks(tmp_path: Path) -> None:
    arr = tmp_path / "arr.yaml"
    arr.write_text(
        "name: arr\ninputs:\n  img: {datatype: UINT8, shape: [-1, -1, -1, 3]}\n"
        "outputs:\n  out: {datatype: UINT8, shape: [-1, -1, -1, 3], from: f.image}\n"
        "steps:\n  f: {op: image.flip, inputs: {image: img}}\n"
    )
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    text_npy = tmp_path / "bad.npy"
    text_npy.write_text("not an array")
    cases = [
        (("validate", str(latin)), "latin.yaml:1:10: the file is not UTF-8 text (byte 0xe9)"),
        (("run", str(arr), "-i", "img=[-1]"), "--input img: '[-1]' is not a valid uint8 value"),
        (("run", str(arr), "-i", "img=1e999"), "--input img: '1e999' is not a valid uint8 value"),
        (("run", str(arr), "-i", "img=null"), "--input img: 'null' is not a valid uint8 value"),
        (("run", str(arr), "-i", "img=[[[1.5, 2, 3]]]"), "has fractions; the input is uint8"),
        (("run", str(arr), "-i", f"img=@{text_npy}"), "--input img: bad.npy is not a readable .npy array"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


def test_npz_output_of_a_ragged_batch_is_one_array_per_sample(tmp_path: Path) -> None:
    arr = tmp_path / "arr.yaml"
    arr.write_text(
        "name: arr\ninputs:\n  img: {datatype: UINT8, shape: [-1, -1, -1, 3]}\n"
        "outputs:\n  out: {datatype: UINT8, shape: [-1, -1, -1, 3], from: f.image}\n"
        "steps:\n  f: {op: image.flip, inputs: {image: img}}\n"
    )
    rng = np.random.default_rng()
    a, b = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8), rng.integers(0, 256, (4, 7, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "o.npz"
    result = _cli("run", str(arr), "-i", f"img=@{tmp_path / 'a.npy'}", "-i", f"img=@{tmp_path / 'b.npy'}", "--output", "npz", "--out", str(out))
    assert result.returncode == 0, result.stderr
    saved = np.load(out)  # no pickle needed
    np.testing.assert_array_equal(saved["out_0"], a[:, ::-1])
    np.testing.assert_array_equal(saved["out_1"], b[:, ::-1])


def test_bytes_outputs_are_text_when_utf8_else_base64(tmp_path: Path) -> None:
    from twinpipe.runtime._run_io import _jsonable

    text = _jsonable(np.array([b"caf\xc3\xa9", b"dog"], dtype=object))
    assert text == {"datatype": "BYTES", "shape": [2], "data": ["café", "dog"]}
    raw = _jsonable(np.array([b"\xff\x00", b"ok"], dtype=object))
    assert raw["encoding"] == "base64"
    assert raw["data"] == ["/wA=", "b2s="]


def test_parity_on_the_shipped_photos_agrees_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    photos = [str(asset_path(n)) for n in ("coffee.jpg", "chelsea.jpg", "astronaut.png")]
    assert main(["parity", "classify_color", "--data", *photos, "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "decode.image" in out and "model.logits" in out and "names.labels" in out


def test_parity_that_cannot_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parity", "imagenet_preprocess", "--data", str(tmp_path / "nothing-*.jpg")]) == 2
    assert capsys.readouterr().err.startswith("twinpipe parity: ")


def test_the_readme_parity_command_runs_as_written() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("twinpipe parity "))
    args = [a.strip("'") for a in command.split()[1:]]
    root = Path(__file__).resolve().parents[2]
    args = [str(root / a) if a.startswith("pipelines/") else a for a in args]
    assert main(args) == 0
