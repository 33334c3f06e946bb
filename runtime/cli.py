"""The ``twinpipe`` command line.

    twinpipe validate FILE...                         check pipeline files; print every error with file:line
    twinpipe run PIPELINE --input NAME=@FILE|VALUE    run a pipeline (a shipped name or a .yaml path)
    twinpipe graph PIPELINE [--format mermaid|dot|png] [--out FILE]
    twinpipe ops [NAME] [--json]                      list the ops, or describe one
    twinpipe schema                                   the JSON Schema of pipeline files, for editors
    twinpipe demo [IMAGE] [--out DIR]                 the image ops over a real photo
    twinpipe serve [--repository DIR] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]   the server
    twinpipe parity PIPELINE --data DIR_OR_GLOB [--server HOST:PORT]   training path vs serving path, step by step

A user error prints a message and exits with status 1 (2 for a malformed command line); it
never prints a Python traceback. ``parity`` exits 1 for a mismatch and 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import twinpipe  # noqa: F401  (registers the shipped pipelines' folder)
from twinpipe.dag import (
    PipelineError,
    PipelineInputError,
    PlanError,
    StepError,
    check,
    json_schema,
    load_pipeline,
    to_dot,
    to_host,
    to_mermaid,
    to_png,
)
from twinpipe.dag._pipeline import DEFAULT_SEARCH_PATHS, find_pipeline
from twinpipe.ops import OpError, get_op, list_ops

from ._run_io import OUTPUT_FORMATS, UserError, parse_inputs, write_outputs

__all__ = ["main"]


def _models(args: argparse.Namespace, paths: Sequence[str]) -> dict[str, Any] | None:
    """The model steps' models: ``--repository``, else the shipped model repository — loaded
    only when one of the pipelines has a model step."""
    from pathlib import Path

    from twinpipe.dag import load_spec
    from twinpipe.models import load_repository
    from twinpipe.pipelines import models_dir

    given = getattr(args, "repository", None)
    if not given:
        try:
            if not any(st.kind == "model" for p in paths for st in load_spec(p).steps):
                return None
        except (PipelineError, OSError):
            return None  # the check itself reports it
    root = Path(given) if given else models_dir()
    if not root.is_dir():
        if given:
            raise UserError(f"--repository {given}: not a folder")
        return None
    repo = load_repository(root)
    for name, error in repo.errors.items():
        print(f"twinpipe: model {name!r} did not load:\n{error}", file=sys.stderr)
    return repo.model_infos()


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    models = _models(args, args.files)
    for path in args.files:
        try:
            valid = check(path, models=models, search_paths=DEFAULT_SEARCH_PATHS)
        except PipelineError as e:
            failed += 1
            print(e, file=sys.stderr)
            continue
        except OSError as e:
            failed += 1
            print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
            continue
        print(f"{path}: ok — pipeline {valid.spec.name!r}, {len(valid.steps)} steps")
    return 1 if failed else 0


def _load(name: str, args: argparse.Namespace) -> Any:
    try:
        path = find_pipeline(name, DEFAULT_SEARCH_PATHS)
        return load_pipeline(path, models=_models(args, [str(path)]))
    except FileNotFoundError as e:
        raise UserError(str(e)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    if args.output == "npz" and not args.out:
        raise UserError("--output npz writes a file: give --out FILE.npz")
    pipe = _load(args.pipeline, args)
    inputs = parse_inputs(args.input or [], pipe)
    try:
        outputs = pipe.run(inputs, mode=args.mode, rng=args.seed)
    except (StepError, PlanError, PipelineInputError) as e:
        raise UserError(str(e)) from None
    write_outputs(to_host(outputs), args.output, args.out)  # steps on a GPU leave their outputs there
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    try:
        path = str(find_pipeline(args.pipeline))
        valid = check(path, models=_models(args, [path]), search_paths=DEFAULT_SEARCH_PATHS)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if args.format == "png":
        if not args.out:
            raise UserError("--format png writes a file: give --out FILE.png")
        with open(args.out, "wb") as f:
            f.write(to_png(valid))
        print(f"wrote {args.out}")
        return 0
    text = to_mermaid(valid) if args.format == "mermaid" else to_dot(valid)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _op_json(name: str) -> dict[str, Any]:
    op = get_op(name)
    return {
        "name": op.name,
        "signature": op.signature,
        "doc": op.doc,
        "inputs": [{"name": s.name, "dtypes": [str(d) for d in s.dtypes or ()], "shape": list(s.shape)} for s in op.inputs],
        "outputs": [{"name": s.name, "dtypes": [str(d) for d in s.dtypes or ()], "shape": list(s.shape)} for s in op.outputs],
        "params": [
            {"name": p.name, "schema": p.kind.json_schema(), "required": p.required, "default": None if p.required else p.default, "doc": p.doc}
            for p in op.params
        ],
        "random": op.is_random,
        "kernels": sorted({k.device for k in op.kernels.values()}),
    }


def _cmd_parity(args: argparse.Namespace) -> int:
    from ._parity import ParityError, parity, render

    try:
        result = parity(args.pipeline, args.data, repository=args.repository, server=args.server,
                        workers=args.workers, atol=args.atol, serving_pipeline=args.serving_pipeline)
    except ParityError as e:
        print(f"twinpipe parity: {e}", file=sys.stderr)
        return 2  # 1 is a mismatch
    print(render(result))
    return result.exit_code


def _cmd_ops(args: argparse.Namespace) -> int:
    if args.name:
        print(json.dumps(_op_json(args.name), indent=2, default=str) if args.json else get_op(args.name).describe())
        return 0
    if args.json:
        print(json.dumps([_op_json(n) for n in list_ops()], indent=2, default=str))
        return 0
    for name in list_ops():
        first = get_op(name).doc.split("\n\n")[0].replace("\n", " ")
        print(f"{name:32s} {first[:90]}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args.image, args.out)


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from ._serve import serve

    if args.no_http and args.no_grpc:
        raise UserError("--no-http and --no-grpc: nothing would serve requests; keep one")
    http_port = _env_port("TWINPIPE_HTTP_PORT", 8000) if args.http_port is None else args.http_port
    grpc_port = _env_port("TWINPIPE_GRPC_PORT", 8001) if args.grpc_port is None else args.grpc_port
    metrics_port = _env_port("TWINPIPE_METRICS_PORT", 8002) if args.metrics_port is None else args.metrics_port
    return asyncio.run(serve(args.repository, host=args.host, http_port=None if args.no_http else http_port,
                             grpc_port=None if args.no_grpc else grpc_port,
                             metrics_port=None if metrics_port < 0 else metrics_port, grace_s=args.grace,
                             max_inflight=args.max_inflight, max_message_mb=args.max_message_mb))


def _env_port(name: str, default: int) -> int:
    """A port's default from the environment (containers, test harnesses), checked like the flag."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"twinpipe serve: ${name} must be a port number, got {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinpipe", description="One pre/post-processing pipeline for training and serving.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check pipeline files; every error with file, line and step")
    p.add_argument("files", nargs="+", metavar="FILE", help="pipeline .yaml files")
    p.add_argument("--repository", "-r", help="the model repository for model steps (default: the shipped one)")
    p.set_defaults(fn=_cmd_validate)

    p = sub.add_parser("run", help="run a pipeline on inputs given on the command line")
    p.add_argument("pipeline", help="a shipped pipeline's name or a .yaml path")
    p.add_argument("--input", "-i", action="append", metavar="NAME=@FILE|VALUE",
                   help="an input: @FILE reads a file (bytes for BYTES inputs, .npy arrays), else a JSON value; repeat a name for a batch")
    p.add_argument("--mode", choices=["serve", "train"], default="serve", help="serve (default) or train (augmentations on)")
    p.add_argument("--seed", type=int, default=None, help="seed for train-mode randomness")
    p.add_argument("--output", choices=OUTPUT_FORMATS, default="json", help="json (stdout, default) or npz (needs --out)")
    p.add_argument("--out", help="write the outputs to this file")
    p.add_argument("--repository", "-r", help="the model repository for model steps (default: the shipped one)")
    p.set_defaults(fn=_cmd_run)

    p = sub.add_parser("graph", help="a picture of a pipeline's DAG with ops and tensor types")
    p.add_argument("pipeline", help="a shipped pipeline's name or a .yaml path")
    p.add_argument("--format", choices=["mermaid", "dot", "png"], default="mermaid")
    p.add_argument("--out", help="write to this file (required for png)")
    p.add_argument("--repository", "-r", help="the model repository for model steps (default: the shipped one)")
    p.set_defaults(fn=_cmd_graph)

    p = sub.add_parser("parity", help="run files through the training and the serving path; compare every step's tensors",
                       description="Run each file (one sample: the pipeline's one BYTES input) through the training path "
                                   "(a DataLoader with workers) and the serving path (the Engine in-process; with --server, "
                                   "also a running server over gRPC), and compare every step's output. Exit status 0: all "
                                   "agree (bit for bit unless --atol); 1: a mismatch; 2: it could not run.")
    p.add_argument("pipeline", help="a shipped pipeline's name or a .yaml path")
    p.add_argument("--data", "-d", required=True, action="extend", nargs="+", metavar="DIR_OR_GLOB",
                   help="a folder (its files), a glob (quoted) or files; each file is one sample")
    p.add_argument("--server", metavar="HOST:PORT", help="also compare a running server's outputs over gRPC")
    p.add_argument("--repository", "-r", help="the model repository for model steps (default: the shipped one)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (default 2; 0: none)")
    p.add_argument("--atol", type=float, default=0.0, help="how far numbers may differ (default 0: bit for bit)")
    p.add_argument("--serving-pipeline", metavar="FILE",
                   help="serve this pipeline file instead (e.g. a new version, against the one trained with)")
    p.set_defaults(fn=_cmd_parity)

    p = sub.add_parser("ops", help="list the registered ops, or describe one")
    p.add_argument("name", nargs="?", help="an op name, e.g. image.resize")
    p.add_argument("--json", action="store_true", help="machine-readable: signatures, params with JSON Schemas, kernels")
    p.set_defaults(fn=_cmd_ops)

    p = sub.add_parser("schema", help="print the JSON Schema of pipeline files (for editors)")
    p.set_defaults(fn=_cmd_schema)

    p = sub.add_parser("serve", help="serve a repository of models and pipelines over HTTP and gRPC (KServe v2, Triton clients)",
                       description="Serve a repository of models (<model>/config.yaml) and pipelines (<name>.yaml) over "
                                   "HTTP/REST and gRPC (KServe v2), with Prometheus metrics; without --repository, the "
                                   "shipped default repository.")
    p.add_argument("--repository", "-r", help="the repository folder (default: the shipped pipelines and model)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--http-port", type=int, default=None,
                   help="HTTP port (default $TWINPIPE_HTTP_PORT, else 8000; 0 picks a free one)")
    p.add_argument("--grpc-port", type=int, default=None,
                   help="gRPC port (default $TWINPIPE_GRPC_PORT, else 8001; 0 picks a free one)")
    p.add_argument("--no-http", action="store_true", help="serve gRPC only")
    p.add_argument("--no-grpc", action="store_true", help="serve HTTP only")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="metrics port (default $TWINPIPE_METRICS_PORT, else 8002; 0 picks one; -1 turns it off)")
    p.add_argument("--grace", type=float, default=10.0, help="seconds requests in flight get at shutdown (default 10)")
    p.add_argument("--max-inflight", type=int, default=1024, help="requests in flight before new ones are refused (default 1024)")
    p.add_argument("--max-message-mb", type=int, default=256,
                   help="largest gRPC message or HTTP request body in MiB (default 256)")
    p.set_defaults(fn=_cmd_serve)

    p = sub.add_parser("demo", help="run the shipped image ops over a real sample photo")
    p.add_argument("image", nargs="?", help="an image file (default: the shipped coffee.jpg)")
    p.add_argument("--out", help="folder to write the produced images to, as PNG")
    p.set_defaults(fn=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``twinpipe`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except PipelineError as e:
        print(e, file=sys.stderr)
    except (UserError, OpError) as e:
        print(f"twinpipe {args.command}: {e}", file=sys.stderr)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"twinpipe {args.command}: {where}{e.strerror or e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
