"""A run's users (UserScope) as SQL conditions."""

from __future__ import annotations

from sqlalchemy import func

from services.scorer.context import UserScope

# psycopg SQL over table alias `t` with scope_params(): the scope's users only.
SCOPE_SQL = """(%(all_users)s OR t.user_name = ANY(%(users)s::text[]))
  AND (%(all_buckets)s OR ueba_bucket(t.tenant, t.user_name, %(n)s) = ANY(%(buckets)s::int[]))"""


def scope_clauses(scope: UserScope, table) -> list:
    out = []
    if scope.users is not None:
        out.append(table.c.user_name.in_(sorted(scope.users)))
    if not scope.every_bucket:
        out.append(func.ueba_bucket(table.c.tenant, table.c.user_name, scope.n).in_(scope.buckets))
    return out


def scope_params(scope: UserScope) -> dict:
    return {"all_users": scope.users is None, "users": sorted(scope.users or ()), "all_buckets": scope.every_bucket,
            "buckets": list(scope.buckets), "n": scope.n}
