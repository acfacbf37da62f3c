"""Risk level crossings announced by the writer of findings: one per entity and rise in level,
not one per finding (docs/integrations.md, "Risk notifications")."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import Connection, Text, func, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from ueba.risk import LEVELS, bounded_risk, open_entity_scores, risk_level
from ueba.store import outbox

Subject = tuple[str, str, str]  # tenant, entity type, entity
_LOCK_CLASS = 0x0E0E0014


def lock(conn: Connection, subjects: Iterable[Subject]) -> list[Subject]:
    """Serialises the writers of each subject's risk until the transaction ends; the subjects, sorted.

    Taken before any incident lock and in one order (the sorted subquery), so writers never
    wait in a circle.
    """
    ordered = sorted(set(subjects))
    if ordered:
        keys = select(func.unnest(literal([f"{t}|{e}:{n}" for t, e, n in ordered], ARRAY(Text))).label("k"))
        keys = keys.order_by(text("k")).subquery()
        conn.execute(select(func.count(func.pg_advisory_xact_lock(_LOCK_CLASS, func.hashtext(keys.c.k)))))
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


def rises(before: dict[Subject, int], after: dict[Subject, int]) -> list[outbox.OutboxRow]:
    """An outbox row for each subject whose level rose above low."""
    return [outbox.risk_crossing_row(*subject, before.get(subject, 0), current) for subject, current in after.items()
            if LEVELS.index(risk_level(current)) > LEVELS.index(risk_level(before.get(subject, 0)))]
