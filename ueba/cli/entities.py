"""`ueba entities list|get|timeline` and `ueba incidents list|get|ack|resolve|false-positive|reopen`.

An entity is named `ip:203.0.113.9`, `host:scanner.example.net` or `user:alice`; a bare
name is an address when it parses as one, else an account.
"""

from __future__ import annotations

import ipaddress

from ueba.cli import output
from ueba.cli.common import UsageError, add_range_options, duration
from ueba.cli.output import emit, page, when
from ueba.cli.query import ANOMALY_HEADERS, LEVELS, REVIEWS, STATUSES, anomaly_row, level_name, status_name, time_range
from ueba.cli.query_calls import common_options, leaf, more_hint, pages
from ueba.v1 import common_pb2, query_pb2

TYPES = {"user": common_pb2.ENTITY_TYPE_USER, "ip": common_pb2.ENTITY_TYPE_IP, "host": common_pb2.ENTITY_TYPE_HOST}
ORDERS = ("time desc", "risk desc")


def type_name(value: int) -> str:
    return common_pb2.EntityType.Name(value).removeprefix("ENTITY_TYPE_").lower()


def entity(text: str) -> common_pb2.EntityRef:
    kind, sep, name = text.partition(":")
    if sep and kind.lower() in TYPES:
        if not name:
            raise UsageError(f"{text!r}: give a name after {kind}:")
        return common_pb2.EntityRef(type=TYPES[kind.lower()], name=name)
    try:
        ipaddress.ip_address(text)
        return common_pb2.EntityRef(type=common_pb2.ENTITY_TYPE_IP, name=text)
    except ValueError:
        return common_pb2.EntityRef(type=common_pb2.ENTITY_TYPE_USER, name=text)


def shown(ref: common_pb2.EntityRef) -> str:
    return f"{type_name(ref.type)}:{ref.name}"


INCIDENT_HEADERS = ["id", "entity", "kind", "risk", "level", "status", "events", "findings", "first_seen", "last_seen", "title"]


def incident_row(i: query_pb2.Incident) -> list:
    return [i.id, shown(i.entity), i.kind, i.risk_score, level_name(i.risk_level), status_name(i.status), i.event_count,
            i.anomaly_count, when(i.first_seen), when(i.last_seen), i.title]


# --- entities -----------------------------------------------------------------------------

def cmd_entities_list(args, stub, out):
    req = query_pb2.ListEntitiesRequest(type=TYPES.get(args.type or "", 0), min_risk_level=LEVELS.get(args.min_risk or "", 0),
                                        page_size=args.limit, page_token=args.page_token or "")
    found, token, _total = pages(stub.ListEntities, req, "entities", args.all, args.timeout)
    rows = [[type_name(e.entity.type), e.entity.name, e.risk, level_name(e.risk_level), e.total_points, e.open_anomalies]
            for e in found]
    emit(args.output, page("entities", found, token), rows, ["type", "entity", "risk", "level", "points", "open"], out,
         items=found)
    if args.output == "table":
        more_hint(len(found), None, token, out)


def cmd_entities_get(args, stub, out):
    e = stub.GetEntity(query_pb2.GetEntityRequest(entity=entity(args.entity), recent_limit=args.recent), timeout=args.timeout)
    if args.output != "table":
        emit(args.output, e, [anomaly_row(a) for a in e.recent_anomalies], ANOMALY_HEADERS, out)
        return
    r = e.risk
    print(f"{shown(r.entity)}: risk {r.risk} ({level_name(r.risk_level)}), {r.total_points} points from "
          f"{r.open_anomalies} open incidents and findings", file=out)
    print(f"first seen {when(e.first_seen, e, 'first_seen') or '-'}, last seen {when(e.last_seen, e, 'last_seen') or '-'}", file=out)
    print(f"linked: {', '.join(e.linked) or '-'}", file=out)
    print("\nOpen incidents:", file=out)
    output.table([incident_row(i) for i in e.open_incidents], INCIDENT_HEADERS, out)
    print("\nRecent anomalies:", file=out)
    output.table([anomaly_row(a) for a in e.recent_anomalies], ANOMALY_HEADERS, out)


def cmd_entities_timeline(args, stub, out):
    tl = stub.GetEntityTimeline(query_pb2.GetEntityTimelineRequest(
        entity=entity(args.entity), range=time_range(args), bucket_seconds=int(duration(args.bucket).total_seconds())),
        timeout=args.timeout)
    rows = [[when(b.start), b.anomalies, b.risk_points, b.users, "SURGE" if b.surge else ""] for b in tl.buckets]
    emit(args.output, tl, rows, ["start", "anomalies", "risk_points", "accounts", "surge"], out)


# --- incidents ----------------------------------------------------------------------------

def cmd_incidents_list(args, stub, out):
    req = query_pb2.ListIncidentsRequest(
        entity=entity(args.entity) if args.entity else None, statuses=[STATUSES[s] for s in args.status or []],
        min_risk_level=LEVELS.get(args.min_risk or "", 0), range=time_range(args), page_size=args.limit,
        page_token=args.page_token or "", order_by=args.order)
    found, token, _total = pages(stub.ListIncidents, req, "incidents", args.all, args.timeout)
    emit(args.output, page("incidents", found, token), [incident_row(i) for i in found], INCIDENT_HEADERS, out, items=found)
    if args.output == "table":
        more_hint(len(found), None, token, out)


def cmd_incidents_get(args, stub, out):
    d = stub.GetIncident(query_pb2.GetIncidentRequest(id=args.id), timeout=args.timeout)
    if args.output != "table":
        emit(args.output, d, [anomaly_row(a) for a in d.anomalies], ANOMALY_HEADERS, out)
        return
    fields = list(zip(INCIDENT_HEADERS, incident_row(d.incident)))
    fields += [("reviewed by", d.incident.reviewed_by), ("comment", d.incident.review_comment)]
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        print(f"{k.ljust(width)}  {v}", file=out)
    print("evidence:", file=out)
    output.message_json(d.incident.evidence, out)
    print("\nAnomalies:", file=out)
    output.table([anomaly_row(a) for a in d.anomalies], ANOMALY_HEADERS, out)


def cmd_incidents_review(args, stub, out):
    resp = stub.ReviewIncidents(query_pb2.ReviewIncidentsRequest(
        action=REVIEWS[args.action], ids=args.ids, comment=args.comment or ""), timeout=args.timeout)
    rows = [[c.user, c.points_before, c.points_after, c.risk_before, c.risk_after] for c in resp.risk_changes]
    emit(args.output, resp, rows, ["user", "points_before", "points_after", "risk_before", "risk_after"], out)
    if args.output == "table":
        print(f"{resp.updated} incidents and {resp.anomalies_updated} anomalies updated", file=out)


# --- argument parsing ---------------------------------------------------------------------

def _paging(p) -> None:
    p.add_argument("--min-risk", choices=LEVELS)
    p.add_argument("--limit", type=int, default=50, help="page size")
    p.add_argument("--page-token")
    p.add_argument("--all", action="store_true", help="follow every page")


def register(sub) -> None:
    common = common_options()
    entities = sub.add_parser("entities", help="accounts, source addresses and hosts by risk").add_subparsers(
        dest="entities_command", required=True, metavar="ACTION")
    p = leaf(entities, "list", cmd_entities_list, "entities ordered by risk", common)
    p.add_argument("--type", choices=TYPES)
    _paging(p)
    p = leaf(entities, "get", cmd_entities_get, "an entity's risk, incidents, links and anomalies", common)
    p.add_argument("entity", help="ip:ADDRESS, host:NAME, user:NAME, or a bare address or account")
    p.add_argument("--recent", type=int, default=20)
    p = leaf(entities, "timeline", cmd_entities_timeline, "an entity's risk over time", common)
    p.add_argument("entity")
    add_range_options(p)
    p.add_argument("--bucket", default="1h", help="bucket size: 15m, 1h, 1d, ...")

    incidents = sub.add_parser("incidents", help="list, inspect and review incidents").add_subparsers(
        dest="incidents_command", required=True, metavar="ACTION")
    p = leaf(incidents, "list", cmd_incidents_list, "incidents, newest or strongest first", common)
    p.add_argument("--entity", help="incidents of (or joined by) this entity")
    p.add_argument("--status", action="append", choices=STATUSES)
    p.add_argument("--order", default="time desc", choices=ORDERS)
    add_range_options(p)
    _paging(p)
    p = leaf(incidents, "get", cmd_incidents_get, "one incident with its anomalies", common)
    p.add_argument("id")
    for action, help in (("ack", "acknowledge"), ("resolve", "resolve"), ("false-positive", "mark false positive"), ("reopen", "reopen")):
        p = leaf(incidents, action, cmd_incidents_review, f"{help} incidents with all their anomalies", common)
        p.add_argument("ids", nargs="+")
        p.add_argument("--comment")
        p.set_defaults(action=action)
