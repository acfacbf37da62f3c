"""`ueba migrate`: applies the store's migrations (the chart's migration Job runs this), or with
`--wait` only waits until someone else has (the pods' init container)."""

from __future__ import annotations

import sys
import time

from sqlalchemy.exc import OperationalError

from ueba.bootstrap import resolve_database_url
from ueba.cli.output import add_output_option, emit
from ueba.settings import BaseSettings
from ueba.store.migrate import SchemaTooOld, require_current_schema, upgrade


def register(sub) -> None:
    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--revision", default="heads")
    add_output_option(p)
    p.add_argument("--lock-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="longest wait of one DDL statement for a table lock before the migration is retried (0: no limit)")
    p.add_argument("--attempts", type=int, default=30, help="tries when a table lock is not granted in time")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="apply nothing: wait up to SECONDS until the schema is the one this release needs")
    p.set_defaults(func=run)


def run(args) -> int:
    url = resolve_database_url(BaseSettings.from_env())
    if args.wait is not None:
        return wait_for_schema(url, args.wait)
    if args.attempts < 1 or args.lock_timeout < 0:
        print("migrate: --attempts must be at least 1 and --lock-timeout not negative", file=sys.stderr)
        return 2
    upgrade(url, args.revision, lock_timeout_seconds=args.lock_timeout, attempts=args.attempts)
    if args.output == "table":
        print("migrations applied")
    else:
        emit(args.output, {"migrated_to": args.revision}, [[args.revision]], ["migrated_to"])
    return 0


def wait_for_schema(url: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        try:
            revision = require_current_schema(url)
            print(f"schema ready at {revision}")
            return 0
        except (SchemaTooOld, OperationalError) as exc:  # the server may not be up yet either
            if time.monotonic() >= deadline:
                print(f"migrate: waited {seconds:g} s: {exc}", file=sys.stderr)
                return 1
            print(f"waiting for migrations: {exc}", file=sys.stderr, flush=True)
        time.sleep(2)
