"""The rule findings a user-day's calibrated score reads, as stored by the profiles service."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ueba.db import create_db_engine
from ueba.store.anomalies import AnomalyRecord, write_anomalies
from services.scorer.store.user_scores import reference_days, rule_findings

T = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)


def _finding(user: str, score: int, key: str, **extra) -> AnomalyRecord:
    return AnomalyRecord(
        tenant="default", user=user, source="rule", profile_id="failed_logins", profile_name="Failed logins",
        profile_kind="failed_logins", risk_score=score, description=key, dimension="authentication", time=T,
        window_start=T, window_end=T + timedelta(minutes=5), evidence=extra.pop("evidence", {}), dedup_key=key,
        **extra)


def test_an_account_targeted_by_a_source_counts_at_the_strength_of_the_sources_finding(scratch_url):
    source = {"type": "ip", "entity": "203.0.113.9"}
    engine = create_db_engine(scratch_url, pool_size=1)
    with engine.begin() as conn:
        write_anomalies(conn, [
            _finding("", 70, "source:203.0.113.9", entity_type="ip", entity="203.0.113.9",
                     evidence={"rarity": {"source_windows": 0, "of": 180, "per_account_decades": 1.9, "decades": 17.1}}),
            _finding("ann", 35, "target:ann", evidence={"source_entity": source}),
            _finding("bob", 40, "burst:bob"),  # the account's own burst: its own score
        ])
    with engine.connect() as conn:
        found = {row[0]: row for row in rule_findings(conn, "default", T - timedelta(days=1), T + timedelta(days=1))}
    assert set(found) == {"ann", "bob"}  # findings about accounts only
    assert found["ann"][4] == 70 and found["bob"][4] == 40
    # The rarity the source's finding measured travels with the account's; the account's own has none.
    assert found["ann"][6] == 17.1 and found["bob"][6] is None
    # The targeted account's finding is in the source's incident: one incident, however many accounts.
    with engine.connect() as conn:
        incidents = conn.exec_driver_sql(
            "SELECT count(DISTINCT incident_id) FROM anomalies WHERE dedup_key IN ('source:203.0.113.9', 'target:ann')"
        ).scalar_one()
    engine.dispose()
    assert incidents == 1 and found["ann"][5] != found["bob"][5]


def test_the_reference_days_leave_out_the_accounts_a_source_targeted(scratch_url):
    source = {"type": "ip", "entity": "203.0.113.9"}
    engine = create_db_engine(scratch_url, pool_size=1)
    day = T.date()
    with engine.begin() as conn:
        write_anomalies(conn, [
            _finding("", 70, "source:203.0.113.9", entity_type="ip", entity="203.0.113.9"),
            _finding("ann", 35, "target:ann", evidence={"source_entity": source}),
            _finding("cid", 35, "target:cid", evidence={"source_entity": source}),
        ])
        conn.exec_driver_sql(
            """INSERT INTO user_scores (tenant, user_name, day, score, scored_hours, learning, top_features, run_id)
               SELECT 'default', u, %(day)s, 96, 3, false, '[]', gen_random_uuid()
               FROM unnest(ARRAY['ann', 'cid', 'dee']) AS u""", {"day": day})
    with engine.connect() as conn:
        rows = reference_days(conn, "default", day, day + timedelta(days=1))
    engine.dispose()
    assert rows == [("dee", day, 96.0)]  # dee's own day; ann's and cid's were the source's attack
