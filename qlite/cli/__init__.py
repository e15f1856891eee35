"""The ``qlite`` command line: ``qlite <command> [options]``.

Commands live in :data:`COMMANDS`, a plain mapping of name -> module path. Each module exposes

* ``add_parser(subparsers)``: add one sub-parser named after the command (``subparsers.add_parser(name, ...)``);
* ``run(args) -> dict``: do the work; the dict is printed as one JSON object, the last line on stdout.

Modules are imported when the parser is built, so keep their top level light (import torch and
friends inside ``run``). Errors of the user's making (``ValueError``, ``TypeError``, missing or
existing files) print ``qlite <command>: error: ...`` on stderr and exit with status 2.
Under ``torchrun`` only rank 0 prints the JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import sys

COMMANDS: dict[str, str] = {
    "fit": "qlite.cli.fit",
    "compare": "qlite.cli.compare",
    "spectrum": "qlite.cli.spectrum",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlite", description="qlite: hybrid quantum-classical lightweight models")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, path in COMMANDS.items():
        importlib.import_module(path).add_parser(sub)
        sub.choices[name].set_defaults(_module=path)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(args._module)
    try:
        result = module.run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError) as err:
        # FloatingPointError: training diverged (fit says which learning rate to lower)
        print(f"qlite {args.command}: error: {err}", file=sys.stderr)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps({"command": args.command, "error": f"{type(err).__name__}: {err}"}))
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        sys.stdout.flush()
        print(json.dumps(_finite(result), default=str, allow_nan=False))
    return 0


def _finite(obj):
    """JSON has no inf / nan (a perfect fit has PSNR inf): they are written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
