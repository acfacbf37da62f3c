"""The stored peer groups of a tenant and each user's group."""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, text

from services.scorer.peers import PeerAssignment
from ueba.store.schema import peer_groups


def replace_peer_groups(conn: Connection, tenant: str, assignment: PeerAssignment) -> None:
    conn.execute(delete(peer_groups).where(peer_groups.c.tenant == tenant))
    if assignment.groups:
        conn.execute(
            insert(peer_groups),
            [{"tenant": tenant, "id": g.id, "name": g.name, "method": g.method, "members": sorted(g.members),
              "profile": g.profile} for g in assignment.groups],
        )
    names = [m for g in assignment.groups for m in g.members]
    ids = [g.id for g in assignment.groups for _ in g.members]
    conn.execute(
        text("""UPDATE users u SET peer_group_id = v.group_id
                FROM unnest(CAST(:names AS text[]), CAST(:ids AS text[])) AS v(user_name, group_id)
                WHERE u.tenant = :tenant AND u.user_name = v.user_name
                  AND u.peer_group_id IS DISTINCT FROM v.group_id"""),
        {"names": names, "ids": ids, "tenant": tenant},
    )
