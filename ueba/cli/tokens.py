"""`ueba tokens create|list|revoke`: API tokens, straight in the database like `ueba migrate`.

Tokens are managed with database access rather than through an API: the first
admin token cannot require a token, and whoever can reach the database already
holds every tenant's data. In Kubernetes run it with the CLI image and the
database Secret (docs/security.md).
"""

from __future__ import annotations

import getpass
import sys

from ueba.auth.roles import ROLES
from ueba.auth.tokens import TokenError, create_token, list_tokens, revoke_token
from ueba.cli.output import add_output_option, emit, fields, page, say, table


def register(sub) -> None:
    p = sub.add_parser("tokens", help="API tokens: create, list, revoke (needs DATABASE_URL)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a new token; its secret is printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="who or what uses it (shown as the actor in the audit log)")
    add_output_option(create)
    create.set_defaults(func=_create)
    ls = actions.add_parser("list", help="tokens, without their secrets")
    ls.add_argument("--tenant")
    ls.add_argument("--all", action="store_true", help="include revoked tokens")
    add_output_option(ls)
    ls.set_defaults(func=_list)
    revoke = actions.add_parser("revoke", help="revoke a token by id (effective within UEBA_AUTH_CACHE_SECONDS)")
    revoke.add_argument("id")
    add_output_option(revoke)
    revoke.set_defaults(func=_revoke)


def _engine():
    from ueba.bootstrap import resolve_database_url
    from ueba.db import create_db_engine
    from ueba.settings import BaseSettings

    return create_db_engine(resolve_database_url(BaseSettings.from_env()), pool_size=1, application_name="ueba-tokens")


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a container with an arbitrary uid
        return "cli"


def _create(args) -> int:
    engine = _engine()
    try:
        with engine.begin() as conn:
            record, secret = create_token(conn, args.tenant, args.name, args.role, _operator())
    except TokenError as exc:
        print(f"tokens: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    made = {"id": record.id, "tenant": record.tenant, "name": record.name, "role": record.role, "token": secret}
    if args.output == "table":
        fields(list(made.items()))
        print("The token is shown only now; store it in a secret manager.", file=sys.stderr)
    else:
        emit(args.output, made, [list(made.values())], list(made))
    return 0


def _list(args) -> int:
    engine = _engine()
    try:
        with engine.connect() as conn:
            records = list_tokens(conn, args.tenant, include_revoked=args.all)
    finally:
        engine.dispose()
    records = [{"id": r.id, "tenant": r.tenant, "name": r.name, "role": r.role, "created_by": r.created_by,
                "created_at": r.created_at, "last_used_at": r.last_used_at, "revoked_at": r.revoked_at} for r in records]
    rows = [[r["id"], r["tenant"], r["name"], r["role"], _iso(r["created_at"]), _iso(r["last_used_at"]),
             _iso(r["revoked_at"])] for r in records]
    if args.output == "table":
        table([r[1:] + r[:1] for r in rows], ["tenant", "name", "role", "created", "last_used", "revoked", "id"],
              fixed=("id",), optional=("created", "revoked"))
    else:
        emit(args.output, page("tokens", records), rows,
             ["id", "tenant", "name", "role", "created_at", "last_used_at", "revoked_at"], items=records)
    return 0


def _revoke(args) -> int:
    engine = _engine()
    try:
        with engine.begin() as conn:
            record = revoke_token(conn, args.id, _operator())
    except TokenError as exc:
        print(f"tokens: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if record is None:
        print(f"tokens: no live token with id {args.id}", file=sys.stderr)
        return 1
    if args.output == "table":
        say(f"revoked {record.id} ({record.tenant}/{record.name}, {record.role})")
    else:
        emit(args.output, {"revoked": record.id}, [[record.id]], ["revoked"])
    return 0


def _iso(value) -> str:
    return value.isoformat(timespec="minutes") if value is not None else ""
