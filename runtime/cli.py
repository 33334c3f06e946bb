"""The ``twinpipe`` command line.

    twinpipe demo [IMAGE] [--out DIR]   run the shipped image ops over a real photo, print what they made
    twinpipe ops [NAME]                 list the registered ops, or describe one
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _cmd_ops(args: argparse.Namespace) -> int:
    from twinpipe.ops import OpError, get_op, list_ops

    if args.name:
        try:
            print(get_op(args.name).describe())
        except OpError as e:
            print(f"twinpipe ops: {e}", file=sys.stderr)
            return 2
        return 0
    for name in list_ops():
        first = get_op(name).doc.split("\n\n")[0].replace("\n", " ")
        print(f"{name:32s} {first[:90]}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args.image, args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinpipe", description="One pre/post-processing pipeline for training and serving.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the shipped image ops over a real sample photo")
    demo.add_argument("image", nargs="?", help="an image file (default: the shipped coffee.jpg)")
    demo.add_argument("--out", help="folder to write the produced images to, as PNG")
    demo.set_defaults(fn=_cmd_demo)
    ops = sub.add_parser("ops", help="list the registered ops, or describe one")
    ops.add_argument("name", nargs="?", help="an op name, e.g. image.resize")
    ops.set_defaults(fn=_cmd_ops)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``twinpipe`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
