"""Dependencies point one way: runtime → dag, models → ops; ops imports nothing of the rest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what each package may import of twinpipe's own packages
ALLOWED = {
    "ops": {"ops"},
    "dag": {"dag", "ops"},
    "models": {"models", "ops", "dag"},  # dag's public data classes (ModelInfo, diagnostics); dag never imports models
    "runtime": {"runtime", "dag", "models", "ops", "pipelines"},
    "pipelines": {"pipelines"},
}


def _imports(path: Path, package: str) -> set[str]:
    """The twinpipe packages a file imports, absolute or relative."""
    found = set()
    depth = len(path.relative_to(ROOT / package).parts) - 1  # folders below the package root
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1 - depth  # > 0: leaves the package
                if up > 0:
                    found.add(f"<{node.level} dots beyond {package}>")
                    continue
                if up == 0 and node.level - 1 == depth and node.module is None:
                    continue
                found.add(package)
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "twinpipe" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        extra = _imports(path, package) - ALLOWED[package]
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"imports against the layering: {bad}"
