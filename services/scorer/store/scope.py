"""A run's users (UserScope) as SQL conditions."""

from __future__ import annotations

from sqlalchemy import func

from services.scorer.context import UserScope

# Text SQL over table alias `t` with scope_params(): the scope's users only.
SCOPE_SQL = """(:all_users OR t.user_name = ANY(CAST(:users AS text[])))
  AND (:all_buckets OR ueba_bucket(t.tenant, t.user_name, :n) = ANY(CAST(:buckets AS int[])))"""


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
