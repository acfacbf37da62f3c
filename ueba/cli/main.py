"""Entry point of the `ueba` command: one subcommand module per area."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module has register(subparsers); add new areas here.
COMMAND_MODULES = (
    "ueba.cli.migrate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ueba", description="User and entity behaviour analytics")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
