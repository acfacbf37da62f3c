"""The one writer of the shared `anomalies` table, for rule (profiles) and model (scorer) findings,
and of the incidents they group into (the rule: docs/architecture.md, "Incidents")."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import Connection, delete, func, literal_column, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ueba import findings
from ueba.store import incidents, outbox, risk_crossings
from ueba.store.schema import anomalies

# What a re-raised finding may change on a row nobody has reviewed yet.
_REFRESHED = ("profile_id", "profile_name", "profile_kind", "risk_score", "description", "dimension", "time",
              "window_end", "evidence")
USER = "user"
ENTITY_TYPES = ("user", "ip", "host")


@dataclass(frozen=True)
class AnomalyRecord:
    """One finding before it is stored; `dedup_key` is unique per tenant, so a repeat is absorbed.

    `entity_type`/`entity` name whom it is about: the account (the default) or a source
    ('ip', 'host', with `user` ''). Evidence `source_entity` ({"type", "entity"}) links an
    account's finding to the incident of the source that targeted it.
    """

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
    entity_type: str = USER
    entity: str = ""  # '' with entity_type 'user': the user
    # A finding that grows while its activity goes on (a brute force re-raised with its count so
    # far): it replaces the unreviewed row of its key and grows its incident.
    refresh: bool = False

    @property
    def subject(self) -> tuple[str, str]:
        return self.entity_type, self.entity or self.user


def _row(record: AnomalyRecord, incident_id: str) -> dict[str, Any]:
    row = asdict(record)
    row["user_name"] = row.pop("user")
    del row["refresh"]
    row["entity_type"], row["entity"] = record.subject
    row["incident_id"] = incident_id
    # clock_timestamp: created_at is when the row is written, not when the batch began.
    row["created_at"] = func.clock_timestamp()
    return row


def _insert(conn: Connection, record: AnomalyRecord, incident_id: str, refresh: bool):
    """(anomaly id, its incident id, whether the row is new) or None when the dedup key absorbed it."""
    stmt = pg_insert(anomalies).values(_row(record, incident_id))
    if refresh:
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant", "dedup_key"],
            # A re-raised finding is judged again by the suppression rules in force (the query
            # service applies them), so it sheds a down-weighting it had.
            set_={**{name: stmt.excluded[name] for name in _REFRESHED}, "suppressed_by": None, "original_score": None},
            where=anomalies.c.status == "new",
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=["tenant", "dedup_key"])
    inserted = literal_column("xmax = 0").label("inserted")  # a refreshed row carries its updater's xid
    return conn.execute(stmt.returning(anomalies.c.id, anomalies.c.incident_id, inserted)).first()


def write_anomalies(conn: Connection, records: Iterable[AnomalyRecord], refresh_unreviewed: bool = False,
                    risk_window_days: int = 30) -> int:
    """Inserts the records, each into its incident; returns how many rows were written.

    A record whose dedup_key exists is skipped, or with `refresh_unreviewed`
    (a rescored day, a brute force still going on) replaces the description, score,
    end and evidence of a row still `new`, and grows its incident: a reviewed anomaly is
    never rewritten behind its reviewer. Within one call the last record of a key wins.
    Each new finding, opened or escalated incident and rise of a subject's risk level
    goes into the outbox in the same transaction (ueba/store/outbox.py).
    """
    latest: dict[tuple[str, str], AnomalyRecord] = {}
    for r in records:
        latest[(r.tenant, r.dedup_key)] = r
    # Sources before the accounts they link to; each subject's lock in one order, so two
    # writers never wait on each other in a circle.
    ordered = sorted(latest.values(), key=lambda r: (r.tenant, "source_entity" in r.evidence, r.subject, r.time))
    subjects = risk_crossings.lock(conn, [(r.tenant, *r.subject) for r in ordered])
    before = risk_crossings.risks(conn, subjects, risk_window_days)
    announced: list[outbox.OutboxRow] = []
    written = sum(_write(conn, record, refresh_unreviewed or record.refresh, announced) for record in ordered)
    if written:
        announced += risk_crossings.rises(before, risk_crossings.risks(conn, subjects, risk_window_days))
    outbox.put(conn, announced)
    return written


def _write(conn: Connection, record: AnomalyRecord, refresh: bool, announced: list[outbox.OutboxRow]) -> bool:
    """One record into its incident, its outbox rows added to `announced`; False when its dedup key absorbed it."""
    incidents.lock(conn, record.tenant, *_owner(record))
    found = incidents.find(conn, record)
    incident_id = found.id if found is not None else str(uuid.uuid4())
    if found is not None and "source_entity" in record.evidence:
        record = replace(record, evidence={**record.evidence, "source_incident": found.id})
    stored = _insert(conn, record, incident_id, refresh)
    if stored is None:
        return False
    if not stored.inserted and stored.incident_id is not None:  # a refreshed row keeps its incident
        _escalated(announced, incidents.grow(conn, stored.incident_id, record, new_finding=False))
        return True
    if stored.incident_id is None:  # a refreshed row stored before incidents existed
        conn.execute(update(anomalies).where(anomalies.c.id == stored.id).values(incident_id=incident_id))
    if stored.inserted:
        announced.append(outbox.anomaly_row(record, stored.id, incident_id))
    if found is not None:
        _escalated(announced, incidents.grow(conn, incident_id, record, new_finding=True))
    else:
        announced.append(outbox.incident_row(incidents.create(conn, incident_id, record), findings.INCIDENT_OPENED))
    return True


def _escalated(announced: list[outbox.OutboxRow], grown) -> None:
    if grown is not None:
        announced.append(outbox.incident_row(grown, findings.INCIDENT_ESCALATED))


def _owner(record: AnomalyRecord) -> tuple[str, str]:
    """The subject whose incidents the record may create or join: the linked source's, or its own."""
    linked = record.evidence.get("source_entity")
    if isinstance(linked, dict) and linked.get("type") in ENTITY_TYPES and linked.get("entity"):
        return linked["type"], linked["entity"]
    return record.subject


def withdraw_unreviewed(conn: Connection, tenant: str, source: str, dedup_keys: list[str]) -> int:
    """Deletes findings of `source` that are still `new`: a rescore no longer supports them."""
    if not dedup_keys:
        return 0
    gone = conn.execute(
        delete(anomalies).where(
            anomalies.c.tenant == tenant,
            anomalies.c.source == source,
            anomalies.c.status == "new",
            anomalies.c.dedup_key.in_(dedup_keys),
        ).returning(anomalies.c.incident_id)
    ).scalars().all()
    incidents.recount(conn, tenant, {i for i in gone if i})
    return len(gone)

