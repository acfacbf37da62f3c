"""The one writer of the shared `anomalies` table, for rule (profiles) and model (scorer) findings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import Connection, delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ueba.store.schema import anomalies

_CHUNK = 1000
# What a re-raised finding may change on a row nobody has reviewed yet.
_REFRESHED = ("profile_id", "profile_name", "profile_kind", "risk_score", "description", "dimension", "time", "evidence")


@dataclass(frozen=True)
class AnomalyRecord:
    """One finding before it is stored; `dedup_key` is unique per tenant, so a repeat is absorbed."""

    tenant: str
    user: str
    source: str  # "rule" or "model"
    profile_id: str
    profile_name: str
    profile_kind: str
    risk_score: int
    description: str
    dimension: str
    time: datetime
    window_start: datetime
    window_end: datetime
    evidence: dict[str, Any]
    dedup_key: str


def _row(record: AnomalyRecord) -> dict[str, Any]:
    row = asdict(record)
    row["user_name"] = row.pop("user")
    # clock_timestamp: created_at is when the row is written, not when the batch began.
    row["created_at"] = func.clock_timestamp()
    return row


def write_anomalies(conn: Connection, records: Iterable[AnomalyRecord], refresh_unreviewed: bool = False) -> int:
    """Inserts the records; returns how many rows were written.

    A record whose dedup_key exists is skipped, or with `refresh_unreviewed`
    (a rescored day) replaces the description, score and evidence of a row
    still `new`: a reviewed anomaly is never rewritten behind its reviewer.
    """
    rows = [_row(r) for r in records]
    written = 0
    for i in range(0, len(rows), _CHUNK):
        stmt = pg_insert(anomalies).values(rows[i : i + _CHUNK])
        if refresh_unreviewed:
            stmt = stmt.on_conflict_do_update(
                index_elements=["tenant", "dedup_key"],
                set_={name: stmt.excluded[name] for name in _REFRESHED},
                where=anomalies.c.status == "new",
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["tenant", "dedup_key"])
        written += len(conn.execute(stmt.returning(anomalies.c.id)).all())
    return written


def withdraw_unreviewed(conn: Connection, tenant: str, source: str, dedup_keys: list[str]) -> int:
    """Deletes findings of `source` that are still `new`: a rescore no longer supports them."""
    if not dedup_keys:
        return 0
    result = conn.execute(
        delete(anomalies).where(
            anomalies.c.tenant == tenant,
            anomalies.c.source == source,
            anomalies.c.status == "new",
            anomalies.c.dedup_key.in_(dedup_keys),
        )
    )
    return result.rowcount
