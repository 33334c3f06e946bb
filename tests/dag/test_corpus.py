"""The malformed-pipeline corpus: each file gives exactly the diagnostics its header lists.

A corpus file starts with a line saying what is wrong with it, then one ``# expect:`` line per
diagnostic, in the order reported: ``LINE:COLUMN: [step 'name': ]message`` for the file itself,
``OTHER.yaml:LINE:COLUMN: ...`` for one in another file (a nested pipeline). Files are validated
with one model repository (``classifier``), except those named ``*no_repo*``, which get none, and
with ``corpus/valid`` as the search path for nested pipelines. ``corpus/valid`` holds pipelines
that must validate cleanly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from twinpipe.dag._load import load_spec
from twinpipe.dag._resolved import ModelInfo
from twinpipe.dag._spec import Location, PipelineError, TensorDecl
from twinpipe.dag._validate import validate

CORPUS = Path(__file__).parent / "corpus"
VALID = CORPUS / "valid"
_HERE = Location("models", 1, 1)
MODELS = {
    "classifier": ModelInfo(
        "classifier",
        inputs=(TensorDecl("pixels", "FP32", (-1, 3, 224, 224), _HERE),),
        outputs=(TensorDecl("logits", "FP32", (-1, 1000), _HERE),),
    )
}
MALFORMED = sorted(CORPUS.glob("*.yaml"))


def _validate(path: Path) -> None:
    models = None if "no_repo" in path.name else MODELS
    validate(load_spec(path), models=models, search_paths=[VALID])


def diagnostics_of(path: Path) -> list[str]:
    """The diagnostics for ``path``, as the ``# expect:`` lines write them."""
    try:
        _validate(path)
    except PipelineError as e:
        out = []
        for d in e.diagnostics:
            file = Path(d.location.file)
            where = f"{d.location.line}:{d.location.column}"
            if file.resolve() != path.resolve():
                where = f"{file.resolve().relative_to(CORPUS.resolve())}:{where}"
            step = f"step {d.step!r}: " if d.step else ""
            out.append(f"{where}: {step}{d.message}")
        return out
    return []


def expected_of(path: Path) -> list[str]:
    return [line.removeprefix("# expect: ").rstrip("\n") for line in path.read_text().splitlines() if line.startswith("# expect: ")]


def test_the_corpus_is_large_enough() -> None:
    assert len(MALFORMED) >= 35
    assert sum(len(expected_of(p)) >= 3 for p in MALFORMED) >= 2  # files with several problems


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.stem)
def test_malformed_file_gives_exactly_its_expected_diagnostics(path: Path) -> None:
    expected = expected_of(path)
    assert expected, f"{path.name} lists no '# expect:' lines"
    assert diagnostics_of(path) == expected


@pytest.mark.parametrize("path", sorted(VALID.glob("*.yaml")), ids=lambda p: p.stem)
def test_valid_pipeline_validates(path: Path) -> None:
    validate(load_spec(path), models=MODELS, search_paths=[VALID])
