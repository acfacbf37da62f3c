"""The aggregation cursor: the snapshot of events a tenant's features include (`scorer_cursors`)."""

from __future__ import annotations

from sqlalchemy import Connection, select, text

from ueba.store.schema import scorer_cursors, scoring_runs


def previous_snapshot(conn: Connection, tenant: str) -> str | None:
    snapshot = conn.execute(
        select(scorer_cursors.c.snapshot).where(scorer_cursors.c.tenant == tenant)).scalar_one_or_none()
    if snapshot is not None:
        return snapshot
    # Before scorer_cursors, the last succeeded run's figures held the cursor.
    return conn.execute(
        select(scoring_runs.c.figures["snapshot"].astext)
        .where(scoring_runs.c.tenant == tenant, scoring_runs.c.status == "succeeded",
               scoring_runs.c.figures.has_key("snapshot"))
        .order_by(scoring_runs.c.finished_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def save_snapshot(conn: Connection, tenant: str, snapshot: str, features_changed: bool) -> None:
    """The new cursor; `features_version` moves only when the features did (baseline_share keys on it)."""
    conn.execute(
        text("""INSERT INTO scorer_cursors (tenant, snapshot) VALUES (:tenant, :snapshot)
                ON CONFLICT (tenant) DO UPDATE SET snapshot = excluded.snapshot, updated_at = now(),
                    features_version = scorer_cursors.features_version + CAST(:changed AS int)"""),
        {"tenant": tenant, "snapshot": snapshot, "changed": features_changed},
    )
