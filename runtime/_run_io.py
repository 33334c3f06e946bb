"""``twinpipe run``'s inputs from the command line and outputs to JSON or NPZ."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OUTPUT_FORMATS", "UserError", "parse_inputs", "write_outputs"]

OUTPUT_FORMATS = ("json", "npz")


class UserError(ValueError):
    """Something the user can fix; the CLI prints it without a traceback."""


def _value(name: str, text: str, dtype: np.dtype | None) -> Any:
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UserError(f"--input {name}: no such file {str(path)!r}")
        if dtype is not None and dtype == np.dtype(object):
            return path.read_bytes()
        if path.suffix == ".npy":
            try:
                return np.load(path, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise UserError(f"--input {name}: {path.name} is not a readable .npy array ({e})") from None
        raise UserError(f"--input {name}: {path.name} is not a .npy array, and {name!r} is not a BYTES input")
    if dtype is not None and dtype == np.dtype(object):
        return text.encode()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"--input {name}: {text!r} is neither @FILE nor a JSON value") from None
    try:
        array = np.asarray(value, dtype=dtype)
    except (OverflowError, TypeError, ValueError) as e:
        raise UserError(f"--input {name}: {text!r} is not a valid {dtype.name if dtype is not None else ''} value: {e}") from None
    if dtype is not None and array.dtype.kind in "iu" and np.asarray(value).dtype.kind == "f":
        raise UserError(f"--input {name}: {text!r} has fractions; the input is {dtype.name}")
    return array


def parse_inputs(items: list[str], pipeline: Any) -> dict[str, Any]:
    """``NAME=@FILE`` / ``NAME=VALUE`` arguments as pipeline inputs; a repeated name is a batch."""
    declared = pipeline.inputs
    values: dict[str, list[Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--input {item!r}: expected NAME=@FILE or NAME=VALUE")
        if name not in declared:
            raise UserError(f"--input {name}: the pipeline has no input {name!r}; its inputs are {', '.join(declared)}")
        values.setdefault(name, []).append(_value(name, text, declared[name].dtype))
    missing = [n for n in declared if n not in values]
    if missing:
        raise UserError(f"missing --input for {', '.join(missing)} (the pipeline's inputs are {', '.join(declared)})")
    return {n: v[0] if len(v) == 1 else v for n, v in values.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    a = np.asarray(value)
    if a.dtype == np.dtype(object):
        items = [bytes(b) for b in a.ravel()]
        try:  # text when every element is UTF-8 (labels, detokenized text), else base64
            return {"datatype": "BYTES", "shape": list(a.shape), "data": [b.decode("utf-8") for b in items]}
        except UnicodeDecodeError:
            return {"datatype": "BYTES", "shape": list(a.shape), "data": [base64.b64encode(b).decode() for b in items], "encoding": "base64"}
    return {"shape": list(a.shape), "dtype": a.dtype.name, "data": a.tolist()}


def write_outputs(outputs: dict[str, Any], fmt: str, out: str | None) -> None:
    """JSON to stdout (or ``out``), or an ``.npz`` file (``out`` required)."""
    if fmt == "npz":
        if not out:
            raise UserError("--output npz writes a file: give --out FILE.npz")
        arrays: dict[str, np.ndarray] = {}
        for k, v in outputs.items():  # a ragged batch becomes one array per sample: k_0, k_1, …
            for key, a in ([(f"{k}_{i}", x) for i, x in enumerate(v)] if isinstance(v, list) else [(k, v)]):
                a = np.asarray(a)
                # BYTES as fixed-width bytes: np.load reads them without pickle
                arrays[key] = a.astype(np.bytes_) if a.dtype == np.dtype(object) else a
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        Path(out).write_bytes(buf.getvalue())
        print(f"wrote {out}: {', '.join(f'{k} {list(a.shape)} {a.dtype}' for k, a in arrays.items())}")
        return
    text = json.dumps({k: _jsonable(v) for k, v in outputs.items()})
    if out:
        Path(out).write_text(text)
        print(f"wrote {out}")
    else:
        sys.stdout.write(text + "\n")
