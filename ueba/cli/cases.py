"""`ueba cases list|get|open|comment|assign|close` and `ueba suppressions list|add|delete`.

Both talk to the query service (--address, $UEBA_QUERY_ADDRESS): cases through its CaseService,
suppression rules through QueryService. Without tokens on the server, `--as NAME` (or
$UEBA_ACTOR) names who made each change in the case timeline and the audit log.
"""

from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from ueba.cli import output
from ueba.cli.common import UsageError, duration, moment
from ueba.cli.entities import INCIDENT_HEADERS, entity, incident_row, shown
from ueba.cli.output import emit, enum_word, page, say, when
from ueba.cli.query import LEVELS, emit_risk_changes, level_name
from ueba.cli.query_calls import common_options, leaf, more_hint, pages
from ueba.messages import enum_words
from ueba.v1 import cases_pb2, cases_pb2_grpc, query_pb2

CASE_STATUSES = enum_words(cases_pb2.CaseStatus, "CASE_STATUS", ("new", "in_progress", "closed"))
REASONS = {"true-positive": cases_pb2.CLOSE_REASON_TRUE_POSITIVE, "benign": cases_pb2.CLOSE_REASON_BENIGN,
           "false-positive": cases_pb2.CLOSE_REASON_FALSE_POSITIVE}
CASE_HEADERS = ["id", "status", "severity", "owner", "title", "incidents", "comments", "reason", "updated_at"]
ENTRY_HEADERS = ["at", "actor", "kind", "text"]
RULE_HEADERS = ["id", "action", "weight", "match", "reason", "created_by", "expires_at", "applied", "active"]


def case_row(c: cases_pb2.Case) -> list:
    return [c.id, enum_word(cases_pb2.CaseStatus.DESCRIPTOR, c.status), level_name(c.severity), c.owner, c.title,
            len(c.incident_ids), c.comments, enum_word(cases_pb2.CloseReason.DESCRIPTOR, c.close_reason),
            when(c.updated_at)]


def emit_case(fmt: str, c: cases_pb2.Case, out) -> None:
    emit(fmt, c, [case_row(c)], CASE_HEADERS, out)


# --- cases ----------------------------------------------------------------------------------

def cmd_cases_list(args, stub, out):
    req = cases_pb2.ListCasesRequest(statuses=[CASE_STATUSES[s] for s in args.status or []], owner=args.owner or "",
                                     page_size=args.limit, page_token=args.page_token or "")
    found, token, _total = pages(stub.ListCases, req, "cases", args.all, args.timeout)
    emit(args.output, page("cases", found, token), [case_row(c) for c in found], CASE_HEADERS, out, items=found)
    if args.output == "table":
        more_hint(len(found), None, token, out)


def cmd_cases_get(args, stub, out):
    d = stub.GetCase(cases_pb2.GetCaseRequest(id=args.id), timeout=args.timeout)
    entries = [[when(e.at), e.actor, e.kind, e.text] for e in d.timeline]
    if args.output != "table":
        emit(args.output, d, entries, ENTRY_HEADERS, out, items=list(d.timeline))
        return
    output.fields(list(zip(CASE_HEADERS, case_row(d.case))) + [("created_by", d.case.created_by),
                                                               ("created_at", when(d.case.created_at))], out)
    print("\nIncidents:", file=out)
    output.table([incident_row(i) for i in d.incidents], INCIDENT_HEADERS, out)
    print("\nTimeline:", file=out)
    output.table(entries, ENTRY_HEADERS, out)


def cmd_cases_open(args, stub, out):
    c = stub.OpenCase(cases_pb2.OpenCaseRequest(
        incident_ids=args.incidents, title=args.title or "", severity=LEVELS.get(args.severity or "", 0),
        owner=args.owner or "", comment=args.comment or ""), timeout=args.timeout)
    emit_case(args.output, c, out)


def cmd_cases_comment(args, stub, out):
    emit_case(args.output, stub.CommentCase(cases_pb2.CommentCaseRequest(id=args.id, text=" ".join(args.text)),
                                            timeout=args.timeout), out)


def cmd_cases_assign(args, stub, out):
    mask = ["owner"] + (["status"] if args.start else [])
    c = stub.UpdateCase(cases_pb2.UpdateCaseRequest(id=args.id, update_mask=mask, owner=args.owner,
                                                    status=cases_pb2.CASE_STATUS_IN_PROGRESS if args.start else 0),
                        timeout=args.timeout)
    emit_case(args.output, c, out)


def cmd_cases_close(args, stub, out):
    resp = stub.CloseCase(cases_pb2.CloseCaseRequest(id=args.id, reason=REASONS[args.reason], comment=args.comment or ""),
                          timeout=args.timeout)
    if args.output == "table":
        emit_case("table", resp.case, out)
    emit_risk_changes(args.output, resp, resp.risk_changes,
                      f"case closed as {args.reason}; {resp.anomalies_updated} findings marked false positive", out)


# --- suppression rules ------------------------------------------------------------------------

def _match_words(m: query_pb2.SuppressionMatch) -> str:
    parts = [shown(m.entity)] if m.HasField("entity") else []
    parts += [f"profile:{m.profile}"] * bool(m.profile) + [f"cidr:{m.cidr}"] * bool(m.cidr) + [f"query:{m.query}"] * bool(m.query)
    return " ".join(parts)


def rule_row(r: query_pb2.SuppressionRule) -> list:
    action = enum_word(query_pb2.SuppressionAction.DESCRIPTOR, r.action)
    return [r.id, action, r.weight if r.action == query_pb2.SUPPRESSION_ACTION_DOWN_WEIGHT else "", _match_words(r.match),
            r.reason, r.created_by, when(r.expires_at, r, "expires_at"), r.applied, r.active]


def _expiry(text: str) -> Timestamp:
    try:
        at = datetime.now(timezone.utc) + duration(text)
    except UsageError:
        at = moment(text)
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def cmd_suppressions_add(args, stub, out):
    if args.down_weight is not None and not 0 < args.down_weight < 1:
        raise UsageError("--down-weight: a factor above 0 and below 1, e.g. 0.5")
    action = query_pb2.SUPPRESSION_ACTION_DOWN_WEIGHT if args.down_weight is not None else query_pb2.SUPPRESSION_ACTION_SUPPRESS
    match = query_pb2.SuppressionMatch(entity=entity(args.entity) if args.entity else None, profile=args.profile or "",
                                       cidr=args.cidr or "", query=" ".join(args.query or []))
    resp = stub.CreateSuppressionRule(query_pb2.CreateSuppressionRuleRequest(
        action=action, weight=args.down_weight or 0.0, match=match, reason=args.reason,
        expires_at=_expiry(args.expires) if args.expires else None), timeout=args.timeout)
    if args.output == "table":
        emit("table", resp, [rule_row(resp.rule)], RULE_HEADERS, out)
    emit_risk_changes(args.output, resp, resp.risk_changes, f"{resp.applied} open findings changed at once", out)


def cmd_suppressions_list(args, stub, out):
    req = query_pb2.ListSuppressionRulesRequest(include_inactive=args.all_rules, page_size=500)
    rules, token, _total = pages(stub.ListSuppressionRules, req, "rules", True, args.timeout)
    emit(args.output, page("rules", rules, token), [rule_row(r) for r in rules], RULE_HEADERS, out, items=rules)


def cmd_suppressions_delete(args, stub, out):
    r = stub.DeleteSuppressionRule(query_pb2.DeleteSuppressionRuleRequest(id=args.id), timeout=args.timeout)
    if args.output == "table":
        say(f"rule {r.id} deleted: new findings are no longer matched; the ones it changed stay as they are", out)
    else:
        emit(args.output, r, [rule_row(r)], RULE_HEADERS, out)


# --- argument parsing -------------------------------------------------------------------------

def register(sub) -> None:
    common = common_options()
    cases = sub.add_parser("cases", help="work incidents as cases: owner, status, comments, timeline").add_subparsers(
        dest="cases_command", required=True, metavar="ACTION")
    stub = cases_pb2_grpc.CaseServiceStub
    p = leaf(cases, "list", cmd_cases_list, "cases, most recently changed first", common, stub)
    p.add_argument("--status", action="append", choices=CASE_STATUSES)
    p.add_argument("--owner")
    p.add_argument("--limit", type=int, default=50, help="page size")
    p.add_argument("--page-token")
    p.add_argument("--all", action="store_true", help="follow every page")
    p = leaf(cases, "get", cmd_cases_get, "a case with its incidents and timeline", common, stub)
    p.add_argument("id")
    p = leaf(cases, "open", cmd_cases_open, "open a case over one or more incidents", common, stub)
    p.add_argument("incidents", nargs="+", metavar="INCIDENT_ID")
    p.add_argument("--title", help="default: the strongest incident's title")
    p.add_argument("--severity", choices=LEVELS, help="default: the strongest incident's risk level")
    p.add_argument("--owner")
    p.add_argument("--comment")
    p = leaf(cases, "comment", cmd_cases_comment, "add a comment to a case's timeline", common, stub)
    p.add_argument("id")
    p.add_argument("text", nargs="+")
    p = leaf(cases, "assign", cmd_cases_assign, "give a case an owner ('' unassigns)", common, stub)
    p.add_argument("id")
    p.add_argument("owner")
    p.add_argument("--start", action="store_true", help="also set the status to in progress")
    p = leaf(cases, "close", cmd_cases_close, "close a case; as false positive its findings are reviewed so", common, stub)
    p.add_argument("id")
    p.add_argument("--reason", required=True, choices=REASONS)
    p.add_argument("--comment")

    rules = sub.add_parser("suppressions", help="rules that suppress or down-weight findings").add_subparsers(
        dest="suppressions_command", required=True, metavar="ACTION")
    p = leaf(rules, "list", cmd_suppressions_list, "the rules in force", common)
    p.add_argument("--all", dest="all_rules", action="store_true", help="expired and deleted rules too")
    p = leaf(rules, "add", cmd_suppressions_add, "suppress (or down-weight) findings matching every criterion given",
              common)
    p.add_argument("--entity", help="ip:ADDRESS, host:NAME, user:NAME, or a bare address or account")
    p.add_argument("--profile", help="profile id, name or kind, or model name")
    p.add_argument("--cidr", help="source address range, e.g. 203.0.113.0/24")
    p.add_argument("-q", "--query", nargs="+", help="a query string, as `ueba anomalies list -q` takes it")
    p.add_argument("--reason", required=True, help="why these findings are not risk (kept in the audit log)")
    p.add_argument("--down-weight", type=float, metavar="FACTOR", help="keep the findings at this factor of their score")
    p.add_argument("--expires", help="an age from now (7d, 12h) or an ISO time; default: until deleted")
    p = leaf(rules, "delete", cmd_suppressions_delete, "stop a rule", common)
    p.add_argument("id")
