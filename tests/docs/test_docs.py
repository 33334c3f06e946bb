"""Every command and code block of README.md and docs/*.md runs, in order, as a reader would run it.

The guides are executable: for each document this test walks its fenced blocks top to bottom in a
scratch folder that links the checkout's top-level entries (so ``pipelines/``, ``examples/`` and
``.venv/`` are where the docs say, and files the reader creates land in the scratch folder):

- ``sh`` blocks run in bash (``set -euo pipefail``) and must exit 0; ``python`` and ``twinpipe``
  are this interpreter's.
- ``python`` blocks run in one namespace per document (top-level ``await`` allowed, on one event
  loop per document); a traceback names the document's own line numbers.
- a block whose first line is ``# file: PATH`` (any language) is written to PATH instead of run.
- ``yaml`` blocks that are not files must at least parse.
- ``text`` blocks are output, not run, unless marked (below).

An HTML comment right before a block changes what happens to it:

- ``<!-- doc-test: background -->``: a server start. It runs in the background until the end of
  the document, the test waits for its "listening" line, and it must then stop cleanly on SIGTERM.
- ``<!-- doc-test: output -->`` on a ``text`` block: each of its lines must appear in the output
  of the ``sh`` block before it (``…`` inside a line matches anything; a line of ``…`` alone, or
  ``...``, is skipped).
- ``<!-- doc-test: skip REASON -->``: not run; the reason is required (e.g. the command is this
  suite itself).

The documented ports (8000–8002) are replaced by free ones, so the test never collides with a real
server; commands that name no port follow ``$TWINPIPE_HTTP_PORT`` / ``$TWINPIPE_GRPC_PORT`` /
``$TWINPIPE_METRICS_PORT``. ``perf_analyzer`` is Triton's load generator, put on PATH from ``find_perf_analyzer``;
where it cannot be installed, blocks calling it are left out and the test reports itself skipped
after running all the rest.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: one document per interpreter
from tests.e2e._server import find_perf_analyzer, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"(?:<!--\s*doc-test:\s*(?P<directive>[^>]*?)\s*-->\s*\n)?^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```\s*$",
                   re.M | re.S)
DOC_PORTS = re.compile(r"\b800[0-2]\b")


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # the line of the body's first line in the document
    directive: str


def blocks(text: str) -> list[Block]:
    return [Block(m["lang"], m["body"], text.count("\n", 0, m.start("body")) + 1, m["directive"] or "")
            for m in FENCE.finditer(text)]


def _make_shim(scratch: Path) -> Path:
    """A ``make`` first on PATH that never rebuilds ``.venv/.installed``: from the scratch folder
    a reinstall would rewrite the checkout's venv scripts to point into the scratch folder (GNU make
    ignores ``-o`` given through ``MAKEFLAGS``, so it goes on the command line)."""
    folder = scratch / ".doc-test-make"
    folder.mkdir(exist_ok=True)
    real = shutil.which("make") or "/usr/bin/make"
    shim = folder / "make"
    shim.write_text(f'#!/bin/sh\nexec {real} -o .venv/.installed "$@"\n')
    shim.chmod(0o755)
    return folder


def _perf_analyzer_bin(scratch: Path) -> Path | None:
    """A folder holding ``perf_analyzer`` (the wrapper, installed and working), or None."""
    wrapper = find_perf_analyzer()
    if not wrapper.is_file():
        return None
    probe = subprocess.run([str(wrapper), "--help"], capture_output=True, text=True, timeout=600)
    if "perf analyzer" not in (probe.stdout + probe.stderr).lower():
        return None
    folder = scratch / ".doc-test-bin"
    folder.mkdir()
    (folder / "perf_analyzer").symlink_to(wrapper)
    return folder


class Reader:
    """Runs one document's blocks in order, as a reader would."""

    def __init__(self, doc: Path, scratch: Path) -> None:
        self.doc, self.scratch = doc, scratch
        self.ports = {str(p): str(free_port()) for p in (8000, 8001, 8002)}
        self.namespace: dict[str, object] = {"__name__": "__doc_test__"}
        self.loop = asyncio.new_event_loop()
        self.background: list[tuple[Block, subprocess.Popen[str]]] = []
        self.last_output = ""
        self.left_out: list[str] = []
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1",
                    "PATH": os.pathsep.join([str(_make_shim(scratch)), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                    # commands that name no port (`make run`, the shipped client) follow these
                    "TWINPIPE_HTTP_PORT": self.ports["8000"], "TWINPIPE_GRPC_PORT": self.ports["8001"],
                    "TWINPIPE_METRICS_PORT": self.ports["8002"]}
        self.perf_bin: Path | bool | None = False  # False: not looked for yet

    def where(self, block: Block) -> str:
        return f"{self.doc.relative_to(ROOT)}:{block.line}"

    def ported(self, code: str) -> str:
        return DOC_PORTS.sub(lambda m: self.ports[m.group(0)], code)

    def run(self, block: Block) -> None:
        first = block.body.splitlines()[0] if block.body.strip() else ""
        if block.directive.startswith("skip"):
            assert block.directive[4:].strip(), f"{self.where(block)}: a skipped block must say why"
            return
        if m := re.match(r"#\s*file:\s*(\S+)", first):
            path = self.scratch / m.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body)
            return
        if block.lang in ("sh", "bash"):
            self.shell(block)
        elif block.lang == "python":
            self.python(block)
        elif block.lang == "yaml":
            yaml.safe_load(block.body)
        elif block.directive == "output":
            self.check_output(block)

    def shell(self, block: Block) -> None:
        script = self.ported(block.body)
        if re.search(r"^\s*perf_analyzer\b", script, re.M):
            if self.perf_bin is False:
                self.perf_bin = _perf_analyzer_bin(self.scratch)
            if self.perf_bin is None:
                self.left_out.append(f"{self.where(block)} (perf_analyzer is not available here)")
                return
            assert isinstance(self.perf_bin, Path)
            script = f'export PATH="{self.perf_bin}:$PATH"\n{script}'
        if block.directive == "background":
            self.start(block, script)
            return
        run = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=self.scratch, env=self.env,
                             capture_output=True, text=True, timeout=600)
        self.last_output = run.stdout + run.stderr
        assert run.returncode == 0, (f"{self.where(block)}: exit {run.returncode}\n$ {block.body}\n"
                                     f"{self.last_output[-4000:]}")

    def start(self, block: Block, script: str) -> None:
        proc = subprocess.Popen(["bash", "-c", "exec " + script.strip()], cwd=self.scratch, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append((block, proc))
        lines: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                break
            lines.append(line)
            if "listening" in line:
                return
        raise AssertionError(f"{self.where(block)}: the server did not start:\n{''.join(lines)[-4000:]}")

    def python(self, block: Block) -> None:
        source = "\n" * (block.line - 1) + self.ported(block.body)
        code = compile(source, str(self.doc), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        cwd = os.getcwd()
        os.chdir(self.scratch)
        try:
            result = eval(code, self.namespace)
            if asyncio.iscoroutine(result):
                self.loop.run_until_complete(result)
        finally:
            os.chdir(cwd)

    def check_output(self, block: Block) -> None:
        seen = " ".join(self.last_output.split())
        for line in block.body.splitlines():
            wanted = " ".join(line.split())
            if wanted in ("", "…", "..."):
                continue
            pattern = ".*?".join(re.escape(part.strip()) for part in wanted.split("…"))
            assert re.search(pattern, seen), f"{self.where(block)}: {line!r} is not in the output:\n{self.last_output[-4000:]}"

    def close(self) -> None:
        self.loop.close()
        for block, proc in self.background:
            os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as Ctrl-C in a terminal would
            try:
                rest, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rest, _ = proc.communicate()
            # `make run` itself dies of the signal; the server under it must still stop cleanly
            assert proc.returncode == 0 or "twinpipe: stopped" in (rest or ""), \
                f"{self.where(block)}: the server exited {proc.returncode} on SIGTERM:\n{(rest or '')[-4000:]}"


def _scratch(tmp_path: Path) -> Path:
    for entry in ROOT.iterdir():
        if entry.name not in (".git",):
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def read_document(doc: Path, scratch: Path) -> list[str]:
    """Run every block of ``doc`` in ``scratch``; returns the blocks left out (and why)."""
    reader = Reader(doc, _scratch(scratch))
    try:
        for block in blocks(doc.read_text()):
            reader.run(block)
    finally:
        reader.close()
    return reader.left_out


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_every_block_of_the_document_runs(doc: Path, tmp_path: Path) -> None:
    # a fresh interpreter per document, as a reader's: ops a guide registers stay out of this process
    run = subprocess.run([sys.executable, __file__, str(doc), str(tmp_path)], capture_output=True, text=True,
                         timeout=900, cwd=ROOT)
    assert run.returncode == 0, f"{doc.relative_to(ROOT)}:\n{(run.stdout + run.stderr)[-6000:]}"
    left_out = [line.removeprefix("LEFT OUT: ") for line in run.stdout.splitlines() if line.startswith("LEFT OUT: ")]
    if left_out:
        pytest.skip("ran every block but " + "; ".join(left_out))


def test_the_block_reader_sees_directives_and_lines() -> None:
    text = "intro\n\n<!-- doc-test: background -->\n```sh\ntwinpipe serve\n```\n\n```python\nx = 1\ny = 2\n```\n"
    found = blocks(text)
    assert [(b.lang, b.line, b.directive) for b in found] == [("sh", 5, "background"), ("python", 9, "")]
    assert found[1].body == "x = 1\ny = 2\n"


def test_outputs_are_checked_line_by_line(tmp_path: Path) -> None:
    reader = Reader(ROOT / "README.md", tmp_path)
    try:
        reader.last_output = "shape 1 (a star): star (0.999), cross (0.001)\nrest\n"
        reader.check_output(Block("text", "shape 1 (a star): star …\n…\n", 1, "output"))
        with pytest.raises(AssertionError, match="is not in the output"):
            reader.check_output(Block("text", "shape 1 (a ring)\n", 1, "output"))
    finally:
        reader.close()


def test_python_errors_point_at_the_document_line(tmp_path: Path) -> None:
    reader = Reader(ROOT / "README.md", tmp_path)
    try:
        with pytest.raises(ZeroDivisionError) as info:
            reader.run(Block("python", "x = 1\ny = x / 0\n", 40, ""))
        assert info.traceback[-1].lineno + 1 == 41 and str(info.traceback[-1].path).endswith("README.md")
    finally:
        reader.close()


if __name__ == "__main__":
    for line in read_document(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"LEFT OUT: {line}")
