"""The ``qlite`` command line: ``qlite <command> [options]``.

Commands live in :data:`COMMANDS`, a plain mapping of name -> module path. Each module exposes

* ``add_parser(subparsers)``: add one sub-parser named after the command (``subparsers.add_parser(name, ...)``);
* ``run(args) -> dict``: do the work; the dict is printed as one JSON object, the last line on stdout.

Modules are imported when the parser is built, so keep their top level light (import torch and
friends inside ``run``). Errors of the user's making (``ValueError``, ``TypeError``, missing or
existing files, a diverged run, bad command-line arguments) print ``qlite <command>: error: ...`` on
stderr and exit with status 2; anything else prints its traceback and exits with status 1
(130 when interrupted). Every exit path except ``--help`` ends stdout with one JSON line
(``{"command": ..., "error": ...}`` on errors). Under ``torchrun`` only rank 0 prints it.
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
    "bench": "qlite.cli.bench",
    "compress": "qlite.cli.compress", "evaluate": "qlite.cli.evaluate",
}


def _json_line(obj: dict) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        sys.stdout.flush()
        print(json.dumps(_finite(obj), default=str, allow_nan=False))
        sys.stdout.flush()


class _ArgumentError(Exception):
    def __init__(self, command: str | None, message: str):
        super().__init__(message)
        self.command = command


class _Parser(argparse.ArgumentParser):
    """argparse's errors (``--size abc``, ``--model foo``, unknown flags) raise instead of exiting, so
    :func:`main` ends them with the JSON line like every other error."""

    def error(self, message):
        words = self.prog.split()
        self.print_usage(sys.stderr)
        raise _ArgumentError(words[1] if len(words) > 1 else None, f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qlite", description="qlite: hybrid quantum-classical lightweight models")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, path in COMMANDS.items():
        importlib.import_module(path).add_parser(sub)
        sub.choices[name].set_defaults(_module=path)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as err:
        print(err, file=sys.stderr)
        given = sys.argv[1:] if argv is None else argv
        command = err.command or next((a for a in given if a in COMMANDS), None)  # e.g. unknown flags: top parser
        _json_line({"command": command, "error": f"ArgumentError: {err}"})
        return 2
    except SystemExit as exit_:  # --help (status 0)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        _json_line({"command": None, "error": "no command given; choose one of " + ", ".join(COMMANDS)})
        return 2
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(args._module)
    try:
        result = module.run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError) as err:
        # FloatingPointError: training diverged (fit says which learning rate to lower)
        print(f"qlite {args.command}: error: {err}", file=sys.stderr)
        _json_line({"command": args.command, "error": f"{type(err).__name__}: {err}"})
        return 2
    except KeyboardInterrupt:
        print(f"qlite {args.command}: interrupted", file=sys.stderr)
        _json_line({"command": args.command, "error": "KeyboardInterrupt: interrupted (a checkpoint run continues with --resume)"})
        return 130
    except Exception as err:  # a bug or an environment failure: keep the traceback, still end with JSON
        import traceback

        traceback.print_exc()
        _json_line({"command": args.command, "error": f"{type(err).__name__}: {err}", "unexpected": True})
        return 1
    _json_line(result)
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
