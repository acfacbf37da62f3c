"""The events behind an anomaly: which events count (README, "The events behind an anomaly") and their pages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from services.query.filters import parse_id
from services.query.store import anomaly_events as store
from services.query.users import keyset_page
from ueba import paging
from ueba.errors import NotFound

KEY_TYPES = (datetime, str)


def list_events(conn: Connection, tenant: str, anomaly_id: str, token: str, size: int) -> tuple[list, str]:
    """(a page of event rows, the next page's token)."""
    canonical = parse_id("anomaly_id", anomaly_id)
    found = store.subject(conn, tenant, canonical)
    if found is None:
        raise NotFound(f"anomaly {anomaly_id} not found")
    fp = paging.fingerprint(tenant, "anomaly events", canonical)
    after = paging.decode(fp, token, KEY_TYPES).key if token else None
    rows = store.page(conn, tenant, found, after, size + 1)
    return keyset_page(rows, size, fp, lambda last: [last.time, last.event_id])
