"""Suppression rules: what they match, how suppressed and down-weighted findings count, expiry, audit."""

from datetime import datetime, timedelta, timezone

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select, update

from services.query import risk_state
from ueba.risk import user_risk
from ueba.store.schema import anomalies, audit_log, suppression_rules
from ueba.v1 import common_pb2, query_pb2

from .conftest import NOW, rpc_error

SUPPRESS = query_pb2.SUPPRESSION_ACTION_SUPPRESS
DOWN = query_pb2.SUPPRESSION_ACTION_DOWN_WEIGHT
IP = common_pb2.ENTITY_TYPE_IP


def rule(svc, action=SUPPRESS, weight=0.0, reason="known scanner", expires=None, actor="ops", **match):
    ts = None
    if expires is not None:
        ts = Timestamp()
        ts.FromDatetime(expires)
    return svc.stub.CreateSuppressionRule(query_pb2.CreateSuppressionRuleRequest(
        action=action, weight=weight, match=query_pb2.SuppressionMatch(**match), reason=reason, expires_at=ts),
        metadata=(("x-ueba-actor", actor),))


def risk(svc, user):
    return svc.stub.GetUser(query_pb2.GetUserRequest(user=user)).risk


def refresh(engine, tenant, when=NOW):
    with engine.begin() as conn:
        risk_state.refresh(conn, tenant, when, 30, "exact")


def test_a_suppressing_rule_takes_its_findings_out_of_risk_and_audits_each(svc, store):
    hit = store.anomaly("alice", 90, kind="impossible_travel")
    kept = store.anomaly("alice", 60)
    other = store.anomaly("bob", 90, kind="impossible_travel")
    resp = rule(svc, profile="impossible_travel", query="user:alice")
    assert resp.applied == 1 and resp.rule.active and resp.rule.created_by == "ops"
    (change,) = resp.risk_changes
    assert (change.user, change.risk_before, change.risk_after) == ("alice", user_risk([90, 60])[1], 60)
    assert risk(svc, "alice").risk == 60
    statuses = store.statuses()
    assert (statuses[hit], statuses[kept], statuses[other]) == ("suppressed", "new", "new")
    got = svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=hit))
    assert got.status == common_pb2.ANOMALY_STATUS_SUPPRESSED and got.suppression_rule == resp.rule.id
    listed = svc.stub.ListAnomalies(query_pb2.ListAnomaliesRequest(filter=query_pb2.AnomalyFilter(query="status:suppressed")))
    assert [a.id for a in listed.anomalies] == [hit]
    audit = store.rows(select(audit_log.c.actor, audit_log.c.action, audit_log.c.target, audit_log.c.details)
                       .where(audit_log.c.tenant == store.tenant).order_by(audit_log.c.id))
    assert [(a.actor, a.action) for a in audit] == [("ops", "suppression.create"), ("ops", "anomaly.suppress")]
    assert audit[0].details["query"] == "user:alice" and audit[0].details["reason"] == "known scanner"
    assert audit[1].target == hit and audit[1].details["rule"] == resp.rule.id


def test_findings_that_arrive_later_are_suppressed_before_risk_is_read(svc, store, engine):
    made = rule(svc, entity=common_pb2.EntityRef(type=IP, name="203.0.113.9"))
    assert made.applied == 0
    incident, findings = store.incident(entity=("ip", "203.0.113.9"), scores=(80,), evidence={"count": 30})
    elsewhere, _ = store.incident(entity=("ip", "198.51.100.1"), scores=(80,), evidence={"count": 30})
    # ListEntities refreshes entity risk first; the rule applies in that refresh.
    listed = svc.stub.ListEntities(query_pb2.ListEntitiesRequest())
    assert [e.entity.name for e in listed.entities] == ["198.51.100.1"]
    assert store.statuses()[findings[0]] == "suppressed"
    got = svc.stub.GetIncident(query_pb2.GetIncidentRequest(id=incident)).incident
    assert got.status == common_pb2.ANOMALY_STATUS_SUPPRESSED
    rules = svc.stub.ListSuppressionRules(query_pb2.ListSuppressionRulesRequest()).rules
    assert [(r.id, r.applied) for r in rules] == [(made.rule.id, 1)]


def test_down_weighting_keeps_the_original_score_and_a_reraised_finding_is_weighed_again(svc, store, engine):
    a = store.anomaly("carol", 80, kind="bulk_download", dimension="data")
    store.anomaly("carol", 50)
    resp = rule(svc, action=DOWN, weight=0.5, profile="bulk_download", reason="backup job")
    assert resp.applied == 1
    got = svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=a))
    assert (got.risk_score, got.original_score, got.status) == (40, 80, common_pb2.ANOMALY_STATUS_NEW)
    assert risk(svc, "carol").total_points == 90 and risk(svc, "carol").risk == user_risk([50, 40])[1]
    # Applying the rule again does not halve it twice.
    refresh(store.engine, store.tenant)
    assert svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=a)).risk_score == 40
    # A writer that re-raises the finding sheds the weighting (ueba/store/anomalies.py); the next refresh weighs it again.
    with store.engine.begin() as conn:
        conn.execute(update(anomalies).where(anomalies.c.id == a).values(risk_score=90, suppressed_by=None, original_score=None))
    refresh(store.engine, store.tenant)
    got = svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=a))
    assert (got.risk_score, got.original_score) == (45, 90)


def test_an_address_range_matches_source_addresses_and_never_fails_on_names(svc, store):
    inside = store.anomaly("dan", 70, evidence={"source_ip": "10.1.2.3", "count": 3})
    outside = store.anomaly("dan", 70, evidence={"source_ip": "10.2.0.1", "count": 3})
    junk = store.anomaly("dan", 70, evidence={"source_ip": "not-an-address", "count": 3})
    resp = rule(svc, cidr="10.1.0.0/16")
    assert resp.applied == 1 and resp.rule.match.cidr == "10.1.0.0/16"
    statuses = store.statuses()
    assert (statuses[inside], statuses[outside], statuses[junk]) == ("suppressed", "new", "new")


def test_an_expired_or_deleted_rule_stops_matching_and_keeps_what_it_did(svc, store, engine):
    first = store.anomaly("eve", 70)
    # The real clock, not the module's NOW: a long session may be past NOW + 5 minutes by now.
    now = datetime.now(timezone.utc)
    soon = rule(svc, query="user:eve", expires=now + timedelta(minutes=5))
    assert soon.applied == 1
    store.anomaly("eve", 65)
    later = now + timedelta(minutes=10)
    refresh(store.engine, store.tenant, later)  # past its expiry: the new finding stays open
    assert sorted(store.statuses().values()) == ["new", "suppressed"] and store.statuses()[first] == "suppressed"
    kept = rule(svc, query="user:eve", reason="noise")
    assert kept.applied == 1
    deleted = svc.stub.DeleteSuppressionRule(query_pb2.DeleteSuppressionRuleRequest(id=kept.rule.id))
    assert not deleted.active and deleted.deleted_by == "anonymous"
    store.anomaly("eve", 60)
    refresh(store.engine, store.tenant, later)
    assert sorted(store.statuses().values()) == ["new", "suppressed", "suppressed"]
    active = svc.stub.ListSuppressionRules(query_pb2.ListSuppressionRulesRequest()).rules
    assert [r.id for r in active] == [soon.rule.id]  # not expired yet at the real now
    every = svc.stub.ListSuppressionRules(query_pb2.ListSuppressionRulesRequest(include_inactive=True)).rules
    assert [r.id for r in every] == [kept.rule.id, soon.rule.id]
    err = rpc_error(svc.stub.DeleteSuppressionRule, query_pb2.DeleteSuppressionRuleRequest(id=kept.rule.id))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    actions = [r.action for r in store.rows(select(audit_log.c.action).where(audit_log.c.tenant == store.tenant)
                                            .order_by(audit_log.c.id))]
    assert actions.count("suppression.delete") == 1


def test_rules_are_checked(svc, store):
    for fields, field in [
        ({"action": 0, "profile": "x"}, "action"),
        ({"action": DOWN, "weight": 1.5, "profile": "x"}, "weight"),
        ({"action": SUPPRESS, "weight": 0.5, "profile": "x"}, "weight"),
        ({"reason": " ", "profile": "x"}, "reason"),
        ({}, "match"),
        ({"cidr": "10.0.0.0/33"}, "match.cidr"),
        ({"query": "colour:red"}, "match.query"),
        ({"entity": common_pb2.EntityRef(type=IP, name="nope")}, "match.entity.name"),
        ({"profile": "x", "expires": NOW - timedelta(hours=1)}, "expires_at"),
    ]:
        err = rpc_error(rule, svc, **fields)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(field), (fields, err.details())
    assert store.rows(select(suppression_rules).where(suppression_rules.c.tenant == store.tenant)) == []


def test_the_cli_adds_lists_and_deletes_rules(svc, store, capsys):
    import json

    from ueba.cli.main import main

    hit = store.anomaly("kai", 80, kind="failed_logins")
    address = ("--address", svc.address)
    assert main(["suppressions", "add", "--profile", "failed_logins", "-q", "user:kai", "--down-weight", "0.25",
                 "--reason", "lab account", "--expires", "7d", "--as", "lou", "-o", "json", *address]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["applied"] == 1 and made["rule"]["created_by"] == "lou" and made["rule"]["action"] == "down_weight"
    assert svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=hit)).risk_score == 20
    assert main(["suppressions", "list", "-o", "csv", *address]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "id,action,weight,match,reason,created_by,expires_at,applied,active"
    assert "profile:failed_logins query:user:kai" in out and made["rule"]["id"] in out
    assert main(["suppressions", "delete", made["rule"]["id"], *address]) == 0
    assert "deleted" in capsys.readouterr().out
    assert main(["suppressions", "list", "-o", "json", *address]) == 0
    assert json.loads(capsys.readouterr().out)["rules"] == []
    assert main(["suppressions", "add", "--reason", "x", "--down-weight", "2", *address]) == 2


def test_a_finding_reviewed_after_it_was_matched_keeps_its_review(svc, store, monkeypatch):
    from services.query import suppression
    from services.query.store import suppression as rule_store

    reviewed = store.anomaly("lou", 70, status="acknowledged")
    open_one = store.anomaly("lou", 60)
    # As if a review had committed between the rule's match and its write.
    monkeypatch.setattr(rule_store, "open_matches", lambda conn, conditions: sorted([reviewed, open_one]))
    with store.engine.begin() as conn:
        made = rule_store.create(conn, store.tenant, {"action": "suppress", "weight": 0.0, "reason": "r", "query": "user:lou"},
                                 "ops", NOW)
        changed, _ = suppression.apply(conn, store.tenant, made, NOW, 30, "exact")
    assert [r.id for r in changed] == [open_one]
    assert store.statuses() == {reviewed: "acknowledged", open_one: "suppressed"}
