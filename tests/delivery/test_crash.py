"""A delivery process killed mid-delivery loses nothing: its leased deliveries are taken over
once their lease runs out, and a message sent twice carries the same idempotency key."""

from __future__ import annotations

import json
import time
from collections import defaultdict

from sqlalchemy import select

from tests.delivery.helpers import finding, statuses, write
from harness.receivers import SECRET, WebhookReceiver
from ueba.store.schema import deliveries, outbox


def _env(url: str, receiver: WebhookReceiver) -> dict[str, str]:
    hook = {"name": "soar", "type": "webhook", "url": receiver.url, "secret_env": "HOOK_SECRET", "kinds": ["rule"],
            "backoff_seconds": 0.05, "max_backoff_seconds": 0.5}
    return {"DATABASE_URL": url, "HOOK_SECRET": SECRET, "UEBA_DELIVERY_DESTINATIONS": json.dumps([hook]),
            "UEBA_DELIVERY_LEASE_SECONDS": "2", "UEBA_DELIVERY_BATCH": "20", "UEBA_DELIVERY_POLL_SECONDS": "0.1",
            "UEBA_ANOMALY_LOG": "off"}


def _leased_now(engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(deliveries.c.outbox_id).where(
            deliveries.c.status == "pending", deliveries.c.lease_owner.is_not(None))).all())


def test_sigkill_mid_delivery_loses_nothing_and_repeats_only_with_the_same_key(fresh_engine, fresh_database_url,
                                                                               service_processes):
    receiver = WebhookReceiver(fail_ratio=0.2, delay=0.03)
    try:
        write(fresh_engine, *[finding(user=f"user{i}", score=40) for i in range(150)])
        first = service_processes.start("delivery", _env(fresh_database_url, receiver))
        deadline = time.monotonic() + 60
        while len(receiver.accepted) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.kill()
        in_flight = _leased_now(fresh_engine)
        assert in_flight > 0, "the worker was killed between batches, not mid-delivery"
        assert 0 < len(set(receiver.keys())) < 150

        service_processes.start("delivery", _env(fresh_database_url, receiver))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and set(statuses(fresh_engine, "soar").values()) != {"delivered"}:
            time.sleep(0.2)
        assert set(statuses(fresh_engine, "soar").values()) == {"delivered"}
        with fresh_engine.connect() as conn:
            expected = {str(k) for k in conn.execute(select(outbox.c.event_id).where(outbox.c.kind == "rule")).scalars()}
        bodies = defaultdict(set)
        for r in receiver.accepted:
            bodies[r.key].add(r.body)
        assert set(bodies) == expected and len(expected) == 150
        assert all(len(b) == 1 for b in bodies.values())  # a repeat is the same message under the same key
        assert receiver.bad_signatures == 0
    finally:
        receiver.close()
