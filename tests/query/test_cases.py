"""Cases over incidents: open, comment, assign, close; the timeline names every actor."""

import json

import grpc
from sqlalchemy import select

from ueba.cli.main import main
from ueba.risk import user_risk
from ueba.store.schema import audit_log
from ueba.v1 import cases_pb2, common_pb2, query_pb2

from .conftest import rpc_error

AS = lambda name: (("x-ueba-actor", name),)  # noqa: E731


def open_case(svc, *incident_ids, actor="anna", **fields):
    return svc.cases.OpenCase(cases_pb2.OpenCaseRequest(incident_ids=list(incident_ids), **fields), metadata=AS(actor))


def test_a_case_closed_as_false_positive_lowers_risk_and_its_timeline_names_each_actor(svc, store):
    incident, findings = store.incident("alice", (85, 60))
    store.anomaly("alice", 40)  # outside the case: it keeps counting
    other_incident, _ = store.incident("bob", (70,))
    before = svc.stub.GetUser(query_pb2.GetUserRequest(user="alice")).risk
    assert before.risk == user_risk([85, 40])[1]  # one incident counts once, at its strongest finding

    case = open_case(svc, incident, comment="looks like the VPN again", actor="anna")
    assert case.status == cases_pb2.CASE_STATUS_NEW and case.severity == common_pb2.RISK_LEVEL_HIGH
    assert list(case.incident_ids) == [incident] and case.created_by == "anna" and case.comments == 1
    svc.cases.CommentCase(cases_pb2.CommentCaseRequest(id=case.id, text="confirmed with the user"), metadata=AS("ben"))
    assigned = svc.cases.UpdateCase(cases_pb2.UpdateCaseRequest(
        id=case.id, update_mask=["owner", "status"], owner="ben", status=cases_pb2.CASE_STATUS_IN_PROGRESS), metadata=AS("carl"))
    assert assigned.owner == "ben" and assigned.status == cases_pb2.CASE_STATUS_IN_PROGRESS

    closed = svc.cases.CloseCase(cases_pb2.CloseCaseRequest(
        id=case.id, reason=cases_pb2.CLOSE_REASON_FALSE_POSITIVE, comment="VPN egress"), metadata=AS("ben"))
    assert closed.case.status == cases_pb2.CASE_STATUS_CLOSED
    assert closed.case.close_reason == cases_pb2.CLOSE_REASON_FALSE_POSITIVE and closed.anomalies_updated == 2
    (change,) = closed.risk_changes
    assert (change.user, change.risk_before, change.risk_after) == ("alice", before.risk, 40)
    after = svc.stub.GetUser(query_pb2.GetUserRequest(user="alice")).risk
    assert (after.risk, after.total_points) == (40, 40)
    statuses = store.statuses()
    assert [statuses[f] for f in findings] == ["false_positive"] * 2
    got = svc.stub.GetIncident(query_pb2.GetIncidentRequest(id=incident))
    assert got.incident.status == common_pb2.ANOMALY_STATUS_FALSE_POSITIVE and got.incident.reviewed_by == "ben"
    assert svc.stub.GetIncident(query_pb2.GetIncidentRequest(id=other_incident)).incident.status == common_pb2.ANOMALY_STATUS_NEW

    detail = svc.cases.GetCase(cases_pb2.GetCaseRequest(id=case.id))
    timeline = [(e.actor, e.kind, e.text) for e in detail.timeline]
    assert timeline == [
        ("anna", "opened", got.incident.title),
        ("anna", "comment", "looks like the VPN again"),
        ("ben", "comment", "confirmed with the user"),
        ("carl", "assigned", "owner: '' -> 'ben'"),
        ("carl", "status", "status: 'new' -> 'in_progress'"),
        ("ben", "findings_reviewed", "2 findings marked false positive"),
        ("ben", "closed", "VPN egress"),
    ]
    assert dict(detail.timeline[-2].details)["anomalies"] == 2
    assert [i.id for i in detail.incidents] == [incident]
    audit = store.rows(select(audit_log.c.actor, audit_log.c.action).where(audit_log.c.tenant == store.tenant))
    assert sorted(audit) == [("ben", "anomaly.false_positive")] * 2


def test_a_closed_case_refuses_a_second_close_and_changes_until_reopened(svc, store):
    incident, _ = store.incident("dora", (75,))
    case = open_case(svc, incident)
    svc.cases.CloseCase(cases_pb2.CloseCaseRequest(id=case.id, reason=cases_pb2.CLOSE_REASON_BENIGN))
    err = rpc_error(svc.cases.CloseCase, cases_pb2.CloseCaseRequest(id=case.id, reason=cases_pb2.CLOSE_REASON_TRUE_POSITIVE))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "closed already (as benign)" in err.details()
    err = rpc_error(svc.cases.UpdateCase, cases_pb2.UpdateCaseRequest(id=case.id, update_mask=["owner"], owner="x"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "reopen" in err.details()
    # Benign changes no finding.
    assert set(store.statuses().values()) == {"new"}
    reopened = svc.cases.UpdateCase(cases_pb2.UpdateCaseRequest(
        id=case.id, update_mask=["status"], status=cases_pb2.CASE_STATUS_IN_PROGRESS))
    assert reopened.status == cases_pb2.CASE_STATUS_IN_PROGRESS and reopened.close_reason == 0
    assert not reopened.HasField("closed_at")
    # The same value again writes nothing.
    svc.cases.UpdateCase(cases_pb2.UpdateCaseRequest(id=case.id, update_mask=["status"], status=cases_pb2.CASE_STATUS_IN_PROGRESS))
    kinds = [e.kind for e in svc.cases.GetCase(cases_pb2.GetCaseRequest(id=case.id)).timeline]
    assert kinds == ["opened", "closed", "status"]


def test_an_incident_is_in_one_case_and_requests_are_checked(svc, store):
    first, _ = store.incident("erin", (50,))
    second, _ = store.incident("fred", (95,))
    case = open_case(svc, first, second, title="two at once", owner="gil")
    assert case.title == "two at once" and case.severity == common_pb2.RISK_LEVEL_CRITICAL and case.owner == "gil"
    assert sorted(case.incident_ids) == sorted([first, second])
    err = rpc_error(open_case, svc, second)
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and f"incident {second} is in case {case.id}" in err.details()
    cases = svc.cases.ListCases(cases_pb2.ListCasesRequest()).cases
    assert [c.id for c in cases] == [case.id]  # the refused case left nothing behind
    for request, field in [
        (cases_pb2.OpenCaseRequest(), "incident_ids"),
        (cases_pb2.OpenCaseRequest(incident_ids=["nope"]), "incident_ids[0]"),
        (cases_pb2.OpenCaseRequest(incident_ids=[first], severity=9), "severity"),
    ]:
        err = rpc_error(svc.cases.OpenCase, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(field), err.details()
    err = rpc_error(open_case, svc, "00000000-0000-0000-0000-000000000000")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    for call, request, field in [
        (svc.cases.CommentCase, cases_pb2.CommentCaseRequest(id=case.id, text="  "), "text"),
        (svc.cases.UpdateCase, cases_pb2.UpdateCaseRequest(id=case.id), "update_mask"),
        (svc.cases.UpdateCase, cases_pb2.UpdateCaseRequest(id=case.id, update_mask=["title"]), "update_mask"),
        (svc.cases.UpdateCase, cases_pb2.UpdateCaseRequest(id=case.id, update_mask=["status"],
                                                           status=cases_pb2.CASE_STATUS_CLOSED), "status"),
        (svc.cases.CloseCase, cases_pb2.CloseCaseRequest(id=case.id), "reason"),
    ]:
        err = rpc_error(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith(field), err.details()
    err = rpc_error(svc.cases.GetCase, cases_pb2.GetCaseRequest(id="00000000-0000-0000-0000-000000000000"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_cases_list_by_status_and_owner_and_pages(svc, store):
    ids = [open_case(svc, store.incident(f"u{n}", (60,))[0], owner="hal" if n % 2 else "").id for n in range(5)]
    svc.cases.CloseCase(cases_pb2.CloseCaseRequest(id=ids[0], reason=cases_pb2.CLOSE_REASON_TRUE_POSITIVE))
    seen, token = [], ""
    while True:
        page = svc.cases.ListCases(cases_pb2.ListCasesRequest(page_size=2, page_token=token))
        seen += [c.id for c in page.cases]
        token = page.next_page_token
        if not token:
            break
    assert seen[0] == ids[0] and sorted(seen) == sorted(ids)  # the last changed first
    open_ = svc.cases.ListCases(cases_pb2.ListCasesRequest(statuses=[cases_pb2.CASE_STATUS_NEW])).cases
    assert sorted(c.id for c in open_) == sorted(ids[1:])
    assert {c.id for c in svc.cases.ListCases(cases_pb2.ListCasesRequest(owner="hal")).cases} == {ids[1], ids[3]}


def test_the_actor_metadata_is_checked(svc, store):
    incident, _ = store.incident("ivy", (60,))
    err = rpc_error(open_case, svc, incident, actor="x" * 200)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details().startswith("x-ueba-actor")
    # Reviews record the named actor too, and "anonymous" when none is named.
    a = store.anomaly("ivy", 30)
    svc.stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(action=query_pb2.REVIEW_ACTION_ACKNOWLEDGE, ids=[a]),
                             metadata=AS("jo"))
    assert svc.stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=a)).reviewed_by == "jo"


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_works_a_case_end_to_end_as_the_named_analyst(svc, store, capsys, monkeypatch):
    incident, findings = store.incident("kim", (90,))
    address = ("--address", svc.address)
    code, out, err = run(capsys, "cases", "open", incident, "--comment", "odd hours", "--as", "lee", "-o", "json", *address)
    assert code == 0, err
    case_id = json.loads(out)["id"]
    monkeypatch.setenv("UEBA_ACTOR", "max")  # the environment names the analyst when --as does not
    assert run(capsys, "cases", "comment", case_id, "called", "the", "user", *address)[0] == 0
    code, out, _ = run(capsys, "cases", "assign", case_id, "max", "--start", *address)
    assert code == 0 and "in_progress" in out and "max" in out
    code, out, _ = run(capsys, "cases", "list", "--status", "in_progress", "-o", "csv", *address)
    assert out.splitlines()[0].startswith("id,status,severity,owner") and case_id in out
    code, out, _ = run(capsys, "cases", "close", case_id, "--reason", "false-positive", "--as", "lee", *address)
    assert code == 0 and "1 findings marked false positive" in out and "kim" in out
    assert store.statuses()[findings[0]] == "false_positive"
    code, out, _ = run(capsys, "cases", "get", case_id, "-o", "ndjson", *address)
    entries = [json.loads(line) for line in out.splitlines()]
    assert [(e["actor"], e["kind"]) for e in entries] == [
        ("lee", "opened"), ("lee", "comment"), ("max", "comment"), ("max", "assigned"), ("max", "status"),
        ("lee", "findings_reviewed"), ("lee", "closed")]
    assert entries[2]["text"] == "called the user"
    code, out, _ = run(capsys, "cases", "get", case_id, *address)
    assert "Timeline:" in out and "Incidents:" in out and incident in out
    code, _out, err = run(capsys, "cases", "close", case_id, "--reason", "benign", *address)
    assert code == 1 and "FAILED_PRECONDITION" in err
