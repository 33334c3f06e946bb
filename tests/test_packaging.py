"""The package installs as one namespace, ``twinpipe``, from a wheel and in editable mode."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["twinpipe.ops", "twinpipe.ops.image", "twinpipe.ops.testing", "twinpipe.ops.classify", "twinpipe.ops.detect", "twinpipe.ops.segment", "twinpipe.ops.tabular", "twinpipe.ops.text", "twinpipe.dag", "twinpipe.models", "twinpipe.runtime", "twinpipe.runtime._proto", "twinpipe.pipelines"]
FOLDERS = {"ops": "twinpipe/ops", "dag": "twinpipe/dag", "models": "twinpipe/models", "runtime": "twinpipe/runtime", "pipelines": "twinpipe/pipelines"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, cwd=out,
    )
    (whl,) = out.glob("twinpipe-*.whl")
    return whl


def test_wheel_holds_only_the_twinpipe_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"twinpipe", next(t for t in tops if t.endswith(".dist-info"))}
    # every Python package folder in the source tree is in the wheel, under twinpipe/
    for folder, target in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder).as_posix()
            assert f"{target}/{rel}" in names, f"{folder}/{rel} missing from the wheel"
    assert "twinpipe/py.typed" in names
    assert any(n.startswith("twinpipe/pipelines/assets/") and n.endswith(".jpg") for n in names)


def test_wheel_installed_into_a_clean_target_imports_every_subpackage(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True)
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin") == ["twinpipe"]
    code = (
        "import importlib, sys\n"
        f"for name in {SUBPACKAGES!r}:\n"
        "    m = importlib.import_module(name)\n"
        f"    assert m.__file__.startswith({str(target)!r}), (name, m.__file__)\n"
        "from twinpipe.pipelines import asset_path\n"
        "import twinpipe\n"
        "print(len(twinpipe.list_ops()), asset_path('coffee.jpg').is_file())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(target)}, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    n_ops, has_asset = result.stdout.split()
    assert int(n_ops) >= 10 and has_asset == "True"


def test_no_top_level_ops_dag_models_runtime_pipelines(tmp_path: Path) -> None:
    # run outside the checkout, so only what the installed package provides is importable
    code = "import importlib.util as u; print([n for n in ('ops','dag','models','runtime','pipelines') if u.find_spec(n)])"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    code = "import twinpipe.ops, twinpipe.runtime; print(twinpipe.ops.image.flip.name)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "image.flip"


def test_public_api_is_explicit() -> None:
    import twinpipe
    import twinpipe.ops
    import twinpipe.ops.testing

    for mod in (twinpipe, twinpipe.ops, twinpipe.ops.testing):
        assert sorted(mod.__all__) == sorted(set(mod.__all__))
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name}"
