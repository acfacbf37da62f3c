"""End to end: events in through ingest; a rule anomaly (profiles) and a model anomaly (scorer)
out through a signed webhook and syslog by the delivery service; a risk crossing notified once;
then an analyst works the riskiest user's incident as a case (query) and closes it as a false
positive, which lowers the user's risk, every step in the case's timeline with its actor."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from harness.receivers import SECRET, SyslogTcpReceiver, WebhookReceiver
from tests.scorer.conftest import constructed_activity
from tests.scorer.helpers import COLUMNS
from ueba.client.ingest import IngestClient
from ueba.timestamps import to_proto
from ueba.v1 import cases_pb2, cases_pb2_grpc, common_pb2, query_pb2, query_pb2_grpc, scorer_pb2, scorer_pb2_grpc

pytestmark = pytest.mark.e2e

TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
# The constructed month ends on its scored day; shifted so that day is yesterday, inside the risk window.
SCORED_DAY = TODAY - timedelta(days=1)


def _events() -> list[common_pb2.Event]:
    from tests.scorer.conftest import SCORED_DAY as constructed_day

    shift = SCORED_DAY - constructed_day
    events = []
    for row in sorted(constructed_activity().rows, key=lambda r: r[2]):
        r = dict(zip(COLUMNS, row))
        if r["user_name"] in ("user6", "newbie"):  # the scorer test's ignored and learning users
            continue
        geo = common_pb2.GeoLocation(country_code=r["country"] or "", city=r["city"] or "",
                                     latitude=r["latitude"] or 0.0, longitude=r["longitude"] or 0.0,
                                     has_coordinates=r["latitude"] is not None)
        events.append(common_pb2.Event(
            event_id=r["event_id"], time=to_proto(r["time"] + shift), user=r["user_name"],
            type=getattr(common_pb2, f"EVENT_TYPE_{r['event_type'].upper()}"),
            outcome=getattr(common_pb2, f"OUTCOME_{r['outcome'].upper()}"), source_ip=r["source_ip"] or "",
            source_host=r["source_host"] or "", destination_host=r["destination_host"] or "",
            application=r["application"] or "", geo=geo, bytes=r["bytes"], file_count=r["file_count"],
            department=r["department"] or "",
        ))
    return events


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _work_a_case(query_address: str) -> str:
    """The riskiest user's strongest incident: opened, commented and closed as a false positive."""
    analyst = (("x-ueba-actor", "sara"),)
    with grpc.insecure_channel(query_address) as channel:
        query, cases = query_pb2_grpc.QueryServiceStub(channel), cases_pb2_grpc.CaseServiceStub(channel)
        top = query.ListUsers(query_pb2.ListUsersRequest(page_size=1)).users[0].risk
        before = query.GetUser(query_pb2.GetUserRequest(user=top.user)).risk
        incidents = query.ListIncidents(query_pb2.ListIncidentsRequest(
            entity=common_pb2.EntityRef(type=common_pb2.ENTITY_TYPE_USER, name=top.user), page_size=100)).incidents
        assert before.risk > 0 and incidents, top
        strongest = max(incidents, key=lambda i: i.risk_score)
        case = cases.OpenCase(cases_pb2.OpenCaseRequest(incident_ids=[strongest.id]), metadata=analyst)
        cases.CommentCase(cases_pb2.CommentCaseRequest(id=case.id, text="travelling, confirmed by phone"),
                          metadata=(("x-ueba-actor", "ben"),))
        closed = cases.CloseCase(cases_pb2.CloseCaseRequest(id=case.id, reason=cases_pb2.CLOSE_REASON_FALSE_POSITIVE),
                                 metadata=analyst)
        after = query.GetUser(query_pb2.GetUserRequest(user=top.user)).risk
        assert closed.anomalies_updated >= 1 and after.risk < before.risk, (before, after)
        timeline = [(e.actor, e.kind) for e in cases.GetCase(cases_pb2.GetCaseRequest(id=case.id)).timeline]
        assert timeline == [("sara", "opened"), ("ben", "comment"), ("sara", "findings_reviewed"), ("sara", "closed")]
    return strongest.id


def test_findings_go_out_through_webhook_and_syslog_and_a_crossing_once(fresh_database_url, service_processes):
    hook, collector = WebhookReceiver(fail_first=2), SyslogTcpReceiver()
    try:
        destinations = [
            {"name": "soar", "type": "webhook", "url": hook.url, "secret_env": "HOOK_SECRET",
             "notify_levels": ["medium", "high", "critical"], "backoff_seconds": 0.1},
            {"name": "siem", "type": "syslog", "address": collector.address, "format": "cef", "kinds": ["rule", "model"]},
        ]
        env = {"DATABASE_URL": fresh_database_url, "UEBA_LOG_LEVEL": "WARNING"}
        ingest = service_processes.start("ingest", env)
        service_processes.start("profiles", {**env, "UEBA_PROFILES_POLL_SECONDS": "0.2"})
        scorer = service_processes.start("scorer", {**env, "UEBA_SCORING_SCHEDULE": "off"})
        query = service_processes.start("query", env)
        service_processes.start("delivery", {**env, "HOOK_SECRET": SECRET, "UEBA_ANOMALY_LOG": "off",
                                             "UEBA_DELIVERY_DESTINATIONS": json.dumps(destinations)})
        with IngestClient(ingest.address, batch_size=2000, window=1) as client:
            assert client.send(_events()).rejected == 0

        rule = _wait(lambda: [d for d in hook.documents() if d["ueba"]["kind"] == "rule"], 120, "a rule anomaly")
        with grpc.insecure_channel(scorer.address) as channel:
            run = scorer_pb2_grpc.ScorerServiceStub(channel).RunScoring(scorer_pb2.RunScoringRequest(
                range=common_pb2.TimeRange(start=to_proto(SCORED_DAY), end=to_proto(TODAY))), timeout=300)
        assert run.status == scorer_pb2.RUN_STATUS_SUCCEEDED and run.anomalies > 0, run.error
        model = _wait(lambda: [d for d in hook.documents() if d["ueba"]["kind"] == "model"], 60, "a model anomaly")
        time.sleep(2)  # anything announced twice would have arrived by now

        assert hook.bad_signatures == 0 and len(hook.failed_keys) == 2  # retried past the receiver's failures
        assert rule[0]["rule"]["ruleset"] == "rule" and model[0]["event"]["dataset"] == "ueba.model"
        keys = hook.keys()
        assert len(keys) == len(set(keys))
        crossings = Counter((d["ueba"]["entity"]["type"], d["ueba"]["entity"]["name"], d["ueba"]["risk"]["level"])
                            for d in hook.documents() if d["ueba"]["kind"] == "risk")
        findings = Counter((d["ueba"]["entity"]["type"], d["ueba"]["entity"]["name"])
                           for d in hook.documents() if d["ueba"]["kind"] in ("rule", "model"))
        assert crossings and set(crossings.values()) == {1}  # one notification per crossing
        assert any(findings[(t, e)] > 1 for t, e, _ in crossings), "no entity with several findings crossed a level"

        cef = [m for m in collector.wait_for(len(rule) + len(model)) if b"CEF:0|UEBA|UEBA|" in m]
        assert any(b"|rule:" in m for m in cef) and any(b"|model:" in m for m in cef)

        incident = _work_a_case(query.address)
        reviewed = _wait(lambda: [d for d in hook.documents() if d["event"]["action"] == "incident-reviewed"], 60,
                         "the closed case's incident announced")
        assert [(d["ueba"]["incident_id"], d["ueba"]["status"]) for d in reviewed] == [(incident, "false_positive")]
    finally:
        hook.close()
        collector.close()
