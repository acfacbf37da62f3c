"""Reads of the scorer's own records for the API: run history and peer groups, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, or_, select

from ueba import paging
from ueba.store.schema import peer_groups, scoring_runs

MAX_PAGE = 500


@dataclass
class RunRow:
    id: str
    status: str
    trigger: str
    range_start: datetime
    range_end: datetime
    started_at: datetime
    finished_at: datetime | None
    figures: dict
    error: str | None


@dataclass
class PeerGroupRow:
    id: str
    name: str
    method: str
    members: list[str]


_RUN_COLUMNS = (
    scoring_runs.c.id,
    scoring_runs.c.status,
    scoring_runs.c.trigger,
    scoring_runs.c.range_start,
    scoring_runs.c.range_end,
    scoring_runs.c.started_at,
    scoring_runs.c.finished_at,
    scoring_runs.c.figures,
    scoring_runs.c.error,
)


class ScorerStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def get_run(self, tenant: str, run_id: str) -> RunRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*_RUN_COLUMNS).where(scoring_runs.c.tenant == tenant, scoring_runs.c.id == run_id)
            ).first()
        return RunRow(*row) if row else None

    def list_runs(self, tenant: str, size: int, token: str) -> tuple[list[RunRow], str]:
        """Newest first; keyset (started_at, id)."""
        fp = paging.fingerprint(tenant, "scoring_runs")
        q = select(*_RUN_COLUMNS).where(scoring_runs.c.tenant == tenant)
        if token:
            started_at, last_id = paging.decode(fp, token, (datetime, str)).key
            q = q.where(or_(scoring_runs.c.started_at < started_at,
                            and_(scoring_runs.c.started_at == started_at, scoring_runs.c.id < last_id)))
        q = q.order_by(scoring_runs.c.started_at.desc(), scoring_runs.c.id.desc()).limit(size + 1)
        with self.engine.connect() as conn:
            rows = [RunRow(*r) for r in conn.execute(q)]
        if len(rows) <= size:
            return rows, ""
        rows = rows[:size]
        return rows, _token(fp, [rows[-1].started_at.isoformat(), str(rows[-1].id)])

    def list_peer_groups(self, tenant: str, size: int, token: str) -> tuple[list[PeerGroupRow], str]:
        """In id order; keyset (id)."""
        fp = paging.fingerprint(tenant, "peer_groups")
        q = select(peer_groups.c.id, peer_groups.c.name, peer_groups.c.method, peer_groups.c.members).where(
            peer_groups.c.tenant == tenant
        )
        if token:
            q = q.where(peer_groups.c.id > paging.decode(fp, token, (str,)).key[0])
        q = q.order_by(peer_groups.c.id).limit(size + 1)
        with self.engine.connect() as conn:
            rows = [PeerGroupRow(*r) for r in conn.execute(q)]
        if len(rows) <= size:
            return rows, ""
        rows = rows[:size]
        return rows, _token(fp, [rows[-1].id])


def _token(fp: str, key: list) -> str:
    return paging.encode(fp, paging.PageToken(key, datetime.now().astimezone()))
