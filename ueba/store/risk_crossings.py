"""Risk level crossings announced by the writer of findings: one per entity and rise in level,
not one per finding (docs/integrations.md, "Risk notifications")."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import Connection, func, select

from ueba.risk import LEVELS, bounded_risk, open_entity_scores, risk_level
from ueba.store import outbox

Subject = tuple[str, str, str]  # tenant, entity type, entity
_LOCK_CLASS = 0x0E0E0014


def lock(conn: Connection, subjects: Iterable[Subject]) -> list[Subject]:
    """Serialises the writers of each subject's risk until the transaction ends; the subjects, sorted.

    Taken before any incident lock and in one order, so writers never wait in a circle.
    """
    ordered = sorted(set(subjects))
    for tenant, entity_type, entity in ordered:
        conn.execute(select(func.pg_advisory_xact_lock(_LOCK_CLASS, func.hashtext(f"{tenant}|{entity_type}:{entity}"))))
    return ordered


def risks(conn: Connection, subjects: list[Subject], window_days: int) -> dict[Subject, int]:
    """The current 0-99 risk of each subject, as the query service computes it (ueba/risk.py)."""
    now = datetime.now(timezone.utc)
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for tenant, entity_type, entity in subjects:
        grouped[(tenant, entity_type)].append(entity)
    found: dict[Subject, int] = {}
    for (tenant, entity_type), entities in grouped.items():
        scores = open_entity_scores(conn, tenant, now, window_days, entity_type, entities)
        for entity in entities:
            found[(tenant, entity_type, entity)] = bounded_risk(scores.get(entity, []))
    return found


def announce_rises(conn: Connection, before: dict[Subject, int], after: dict[Subject, int]) -> int:
    """An outbox row for each subject whose level rose above low; how many."""
    n = 0
    for subject, current in after.items():
        previous = before.get(subject, 0)
        if LEVELS.index(risk_level(current)) > max(LEVELS.index(risk_level(previous)), 0):
            outbox.add_risk_crossing(conn, *subject, previous, current)
            n += 1
    return n
