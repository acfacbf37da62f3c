"""Entry point of the `ueba` command: every module in ueba.cli with a register() adds its subcommands."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import ueba.cli
from ueba.cli.exits import EXIT_INTERRUPTED, EXIT_OK, HELP


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command`, only the module of that name when it registers
    that command: importing every module (queries, migrations, the simulator) cost `ueba ship`
    more CPU than parsing 20,000 lines."""
    names = sorted(info.name for info in pkgutil.iter_modules(ueba.cli.__path__) if info.name != "main")
    if command in names:
        parser, commands = _parser([command])
        if command in commands:
            return parser
    return _parser(names)[0]


def _parser(modules: list[str]) -> tuple[argparse.ArgumentParser, set[str]]:
    parser = argparse.ArgumentParser(prog="ueba", description="User and entity behaviour analytics",
                                     epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in modules:
        module = importlib.import_module(f"ueba.cli.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser, set(sub.choices)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`ueba profiles list | head -2`): what it wanted it has. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # not a real file (tests capture stdout)
            pass
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
