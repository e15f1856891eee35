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
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"qlite {args.command}: error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        sys.stdout.flush()
        print(json.dumps(result, default=str))
    return 0
