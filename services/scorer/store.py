"""Reads of the scorer's own records: run history and peer groups, with keyset pagination."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, or_, select

from ueba.store.schema import peer_groups, scoring_runs

MAX_PAGE = 500
DEFAULT_PAGE = 50


class BadPageToken(ValueError):
    pass


def encode_token(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode()


def decode_token(token: str) -> list:
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, json.JSONDecodeError):
        raise BadPageToken("page_token: not a token this service issued") from None
    if not isinstance(values, list):
        raise BadPageToken("page_token: not a token this service issued")
    return values


def page_size(requested: int) -> int:
    if requested < 0:
        raise ValueError("page_size: must not be negative")
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


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


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


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
        q = select(*_RUN_COLUMNS).where(scoring_runs.c.tenant == tenant)
        if token:
            started, last_id = decode_token(token)
            try:
                started_at = datetime.fromisoformat(started)
            except (TypeError, ValueError):
                raise BadPageToken("page_token: not a token this service issued") from None
            q = q.where(
                or_(scoring_runs.c.started_at < started_at,
                    and_(scoring_runs.c.started_at == started_at, scoring_runs.c.id < last_id))
            )
        q = q.order_by(scoring_runs.c.started_at.desc(), scoring_runs.c.id.desc()).limit(size + 1)
        with self.engine.connect() as conn:
            rows = [RunRow(*r) for r in conn.execute(q)]
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            next_token = encode_token([rows[-1].started_at.isoformat(), rows[-1].id])
        return rows, next_token

    def list_peer_groups(self, tenant: str, size: int, token: str) -> tuple[list, str]:
        q = select(peer_groups.c.id, peer_groups.c.name, peer_groups.c.method, peer_groups.c.members).where(
            peer_groups.c.tenant == tenant
        )
        if token:
            (last_id,) = decode_token(token)
            q = q.where(peer_groups.c.id > str(last_id))
        q = q.order_by(peer_groups.c.id).limit(size + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            next_token = encode_token([rows[-1].id])
        return rows, next_token


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
