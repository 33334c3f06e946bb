"""The ``twinpipe`` command: ``ops`` and ``demo`` (the README's main job)."""

from __future__ import annotations

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
    assert main(["ops", "image.resiz"]) == 2
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
