"""Entry point of the `ueba` command: every module in ueba.cli with a register() adds its subcommands."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import ueba.cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ueba", description="User and entity behaviour analytics")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(ueba.cli.__path__), key=lambda m: m.name):
        if info.name == "main":
            continue
        module = importlib.import_module(f"ueba.cli.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
