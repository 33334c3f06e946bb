"""Pictures of a pipeline's DAG: Mermaid and Graphviz text, and a PNG drawn with OpenCV.

Every step shows its name and what runs it (op, model, pipeline or python target) and the device it
is placed on when it names one (``device: cpu|cuda``); every edge
shows the tensor it carries with its statically inferred type, e.g. ``decode.image uint8[? ? 3]``.
"""

from __future__ import annotations

import textwrap

import cv2
import numpy as np

from ._resolved import ValidPipeline

__all__ = ["to_dot", "to_mermaid", "to_png"]


def _nodes(valid: ValidPipeline) -> list[tuple[str, str]]:
    """(node id, label) for inputs, steps and outputs, in file order."""
    nodes = [(f"input:{d.name}", f"input {d.name}\n{d.datatype} {list(d.shape)}") for d in valid.spec.inputs]
    for s in valid.steps:
        extra = f"\non {s.spec.device}" if s.spec.device != "auto" else ""  # where it was placed (auto: as the machine allows)
        extra += f"\n[{s.spec.mode} only]" if s.spec.mode else ""
        extra += f"\nwhen {s.spec.when}" if s.spec.when else ""
        nodes.append((s.name, f"{s.name}\n{s.spec.kind}: {s.spec.target}{extra}"))
    nodes += [(f"output:{d.name}", f"output {d.name}\n{d.datatype} {list(d.shape)}") for d in valid.spec.outputs]
    return nodes


def _edges(valid: ValidPipeline) -> list[tuple[str, str, str]]:
    """(from, to, label) for every data and ``when`` dependency and every pipeline output."""
    edges = []
    for s in valid.steps:
        refs = [*s.spec.inputs.values(), *([s.spec.when] if s.spec.when else [])]
        for ref in refs:
            while ref is not None:
                src = f"input:{ref.name}" if ref.step is None else ref.step
                edges.append((src, s.name, f"{ref} {valid.types.get(str(ref), '')}".strip()))
                ref = ref.default  # type: ignore[assignment]
    for d in valid.spec.outputs:
        if d.source is not None:
            src = f"input:{d.source.name}" if d.source.step is None else d.source.step
            edges.append((src, f"output:{d.name}", str(d.source)))
    return edges


def _id(node: str) -> str:
    # readable, and collision-free: "my-step" and "my_step" differ by the escaped character
    return "n_" + "".join(c if c.isalnum() else f"_{ord(c):x}_" for c in node)


def to_mermaid(valid: ValidPipeline) -> str:
    """A Mermaid ``flowchart`` of the pipeline (renders on GitHub and in most Markdown viewers)."""
    lines = ["flowchart TD"]
    for node, label in _nodes(valid):
        text = label.replace('"', "'").replace("\n", "<br/>")
        shape = ('(["', '"])') if node.startswith(("input:", "output:")) else ('["', '"]')
        lines.append(f"    {_id(node)}{shape[0]}{text}{shape[1]}")
    for a, b, label in _edges(valid):
        lines.append(f'    {_id(a)} -->|"{label.replace(chr(34), chr(39))}"| {_id(b)}')
    return "\n".join(lines) + "\n"


def to_dot(valid: ValidPipeline) -> str:
    """A Graphviz ``digraph`` of the pipeline."""
    lines = [f'digraph "{valid.spec.name}" {{', "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
    for node, label in _nodes(valid):
        shape = ", shape=ellipse" if node.startswith(("input:", "output:")) else ""
        lines.append(f'  {_id(node)} [label="{label.replace(chr(34), chr(39))}"{shape}];'.replace("\n", "\\n"))
    for a, b, label in _edges(valid):
        lines.append(f'  {_id(a)} -> {_id(b)} [label="{label}", fontsize=10];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _levels(valid: ValidPipeline) -> dict[str, int]:
    """Row of each node: the longest path from an input."""
    level: dict[str, int] = {n: 0 for n, _ in _nodes(valid) if n.startswith("input:")}
    edges = _edges(valid)
    for node, _ in _nodes(valid):  # file order is a topological order after validation
        if node in level:
            continue
        parents = [level.get(a, 0) for a, b, _ in edges if b == node]
        level[node] = 1 + max(parents, default=0)
    return level


def to_png(valid: ValidPipeline) -> bytes:
    """A PNG of the DAG: nodes in rows by depth, edges labelled with tensor and type."""
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    box_w, box_h, gap_x, gap_y = 250, 70, 40, 80
    nodes = dict(_nodes(valid))
    level = _levels(valid)
    rows: dict[int, list[str]] = {}
    for node in nodes:
        rows.setdefault(level[node], []).append(node)
    width = max(len(r) for r in rows.values()) * (box_w + gap_x) + gap_x
    height = (max(rows) + 1) * (box_h + gap_y) + gap_y
    img = np.full((height, width, 3), 255, np.uint8)
    pos: dict[str, tuple[int, int]] = {}
    for r, row in rows.items():
        left = (width - len(row) * (box_w + gap_x) + gap_x) // 2
        for i, node in enumerate(row):
            pos[node] = (left + i * (box_w + gap_x), gap_y + r * (box_h + gap_y))
    for a, b, label in _edges(valid):
        (ax, ay), (bx, by) = pos[a], pos[b]
        p, q = (ax + box_w // 2, ay + box_h), (bx + box_w // 2, by)
        cv2.arrowedLine(img, p, q, (90, 90, 90), 1, cv2.LINE_AA, tipLength=12 / max(1.0, float(np.hypot(q[0] - p[0], q[1] - p[1]))))
        mid = ((p[0] + q[0]) // 2 + 4, (p[1] + q[1]) // 2)
        cv2.putText(img, label[:44], mid, font, 0.38, (40, 90, 160), 1, cv2.LINE_AA)
    for node, (x, y) in pos.items():
        io = node.startswith(("input:", "output:"))
        cv2.rectangle(img, (x, y), (x + box_w, y + box_h), (235, 245, 230) if io else (245, 235, 225), -1)
        cv2.rectangle(img, (x, y), (x + box_w, y + box_h), (60, 60, 60), 1, cv2.LINE_AA)
        lines = [w for part in nodes[node].split("\n") for w in textwrap.wrap(part, 34)][:4]
        for k, text in enumerate(lines):
            cv2.putText(img, text, (x + 8, y + 18 + 16 * k), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("OpenCV could not encode the graph as PNG")
    return png.tobytes()
