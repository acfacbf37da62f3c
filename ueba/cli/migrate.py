"""`ueba migrate`: applies the store's migrations (the chart's migration Job runs this)."""

from __future__ import annotations

from ueba.bootstrap import resolve_database_url
from ueba.cli.output import add_output_option, emit
from ueba.settings import BaseSettings
from ueba.store.migrate import upgrade


def register(sub) -> None:
    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--revision", default="heads")
    add_output_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    settings = BaseSettings.from_env()
    upgrade(resolve_database_url(settings), args.revision)
    if args.output == "table":
        print("migrations applied")
    else:
        emit(args.output, {"migrated_to": args.revision}, [[args.revision]], ["migrated_to"])
    return 0
