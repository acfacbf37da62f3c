"""`ueba summary | anomalies | users | risk-timeline | ignore`: the query service for people.

Every command talks gRPC to the query service at --address (default
$UEBA_QUERY_ADDRESS or 127.0.0.1:50054) and prints through ueba.cli.output
(--output table|json|csv|ndjson). Exit codes are those of `ueba --help`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

import grpc

from ueba.cli import output
from ueba.cli.common import UsageError, add_range_options, duration, moment, range_of
from ueba.cli.output import day, emit, enum_word, page, say, when
from ueba.cli.query_calls import common_options, explain_error, leaf, more_hint, pages
from ueba.cli.pictures import heat_row, sparkline
from ueba.client.channel import ChannelConfig, open_channel
from ueba.messages import LEVEL_ENUM, SOURCE_ENUM, STATUS_ENUM
from ueba.v1 import common_pb2, query_pb2, query_pb2_grpc

LEVELS, STATUSES, SOURCES = LEVEL_ENUM, STATUS_ENUM, SOURCE_ENUM
REVIEWS = {"ack": query_pb2.REVIEW_ACTION_ACKNOWLEDGE, "resolve": query_pb2.REVIEW_ACTION_RESOLVE,
           "false-positive": query_pb2.REVIEW_ACTION_FALSE_POSITIVE, "reopen": query_pb2.REVIEW_ACTION_REOPEN}
QUERY_HELP = ("query string, e.g. user:anna.weber risk>=high \"new country\"; the language is in docs/query-language.md "
              "(terms are ANDed; AND, OR and NOT are not operators yet)")


def level_name(value: int) -> str:
    return enum_word(common_pb2.RiskLevel.DESCRIPTOR, value)


def status_name(value: int) -> str:
    return enum_word(common_pb2.AnomalyStatus.DESCRIPTOR, value)


def source_name(value: int) -> str:
    return enum_word(common_pb2.AnomalySource.DESCRIPTOR, value)


def time_range(args) -> common_pb2.TimeRange | None:
    start, end = range_of(args)
    if start is None and end is None:
        return None
    rng = common_pb2.TimeRange()
    if start:
        rng.start.FromDatetime(start)
    if end:
        rng.end.FromDatetime(end)
    return rng


# --- calls ----------------------------------------------------------------------

def anomaly_filter(args) -> query_pb2.AnomalyFilter:
    return query_pb2.AnomalyFilter(
        range=time_range(args),
        risk_levels=[LEVELS[x] for x in args.risk or []],
        profiles=args.profile or [],
        source=SOURCES.get(args.source or "", 0),
        statuses=[STATUSES[x] for x in args.status or []],
        users=args.user or [],
        dimensions=args.dimension or [],
        query=" ".join(args.query or []),
        include_ignored=args.include_ignored,
    )


# Column names are the JSON field names, so a CSV header and a JSON key never disagree.
ANOMALY_HEADERS = ["id", "time", "user", "risk_score", "risk_level", "status", "source", "profile_name", "dimension",
                   "description"]
ANOMALY_TABLE = ["time", "user", "risk", "level", "status", "profile", "description", "id"]
ANOMALY_TABLE_FIT = {"fixed": ("time", "id"), "optional": ("status", "profile", "level")}


def anomaly_row(a: common_pb2.Anomaly) -> list[Any]:
    return [a.id, when(a.time), a.user, a.risk_score, level_name(a.risk_level), status_name(a.status),
            source_name(a.source), a.profile_name, a.dimension, a.description]


def anomaly_table_row(a: common_pb2.Anomaly) -> list[Any]:
    return [when(a.time)[5:16], a.user, a.risk_score, level_name(a.risk_level), status_name(a.status),
            a.profile_name, a.description, a.id]


def emit_anomalies(fmt: str, data: Any, anomalies, out: TextIO) -> None:
    """Anomalies in a table (short columns, the id last), or every field for scripts."""
    if fmt == "table":
        output.table([anomaly_table_row(a) for a in anomalies], ANOMALY_TABLE, out, **ANOMALY_TABLE_FIT)
    else:
        emit(fmt, data, [anomaly_row(a) for a in anomalies], ANOMALY_HEADERS, out, items=list(anomalies))


# --- summary ------------------------------------------------------------------------

def write_summary(s: query_pb2.Summary, out: TextIO) -> None:
    say(f"Anomalies {when(s.range.start)} to {when(s.range.end)}: {s.total_anomalies:,} "
        f"({s.new_anomalies:,} new, {s.reviewed_anomalies:,} reviewed, {s.total_points:,} risk points); "
        f"{s.users_seen:,} users seen, {s.events:,} events", out)
    at_risk = ", ".join(f"{c.key} {c.count:,}" for c in s.users_by_risk_level)
    say(f"Users by current risk: {at_risk}", out)
    for title, counts in (("risk level", s.by_risk_level), ("profile", s.by_profile), ("dimension", s.by_dimension)):
        say(f"\nBy {title}:", out)
        output.table([[c.key, c.count] for c in counts], [title, "anomalies"], out)
    say("\nRiskiest users:", out)
    output.table([[u.user, u.risk, level_name(u.risk_level), u.total_points, u.open_anomalies] for u in s.riskiest_users],
                 ["user", "risk", "level", "points", "open"], out)


def cmd_summary(args, stub, out):
    s = stub.GetSummary(query_pb2.GetSummaryRequest(range=time_range(args), top_users=args.top, include_ignored=args.include_ignored),
                        timeout=args.timeout)
    if args.output == "table":
        write_summary(s, out)
        return
    rows = [["users_by_risk_level", c.key, c.count] for c in s.users_by_risk_level]
    rows += [["risk_level", c.key, c.count] for c in s.by_risk_level] + [["profile", c.key, c.count] for c in s.by_profile]
    rows += [["dimension", c.key, c.count] for c in s.by_dimension] + [["status", c.key, c.count] for c in s.by_status]
    rows += [["user_risk", u.user, u.risk] for u in s.riskiest_users]
    emit(args.output, s, rows, ["section", "key", "value"], out)


def print_summary(address: str, out: TextIO = sys.stdout, timeout: float = 30.0) -> bool:
    """Prints the summary and riskiest users (what `ueba up` shows once started); False when unreachable."""
    try:
        with open_channel(address, ChannelConfig.from_env()) as channel:
            s = query_pb2_grpc.QueryServiceStub(channel).GetSummary(query_pb2.GetSummaryRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        print(explain_error(exc, address)[0], file=out)
        return False
    write_summary(s, out)
    return True


# --- anomalies ---------------------------------------------------------------------------

def cmd_anomalies_list(args, stub, out):
    req = query_pb2.ListAnomaliesRequest(filter=anomaly_filter(args), page_size=args.limit,
                                         page_token=args.page_token or "", order_by=args.order)
    found, token, total = pages(stub.ListAnomalies, req, "anomalies", args.all, args.timeout)
    emit_anomalies(args.output, page("anomalies", found, token, total), found, out)
    if args.output == "table":
        more_hint(len(found), total, token, out)


def cmd_anomalies_get(args, stub, out):
    a = stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=args.id), timeout=args.timeout)
    if args.output != "table":
        emit(args.output, a, [anomaly_row(a)], ANOMALY_HEADERS, out)
        return
    pairs = list(zip(ANOMALY_HEADERS, anomaly_row(a)))
    pairs += [("window", f"{when(a.window_start)} to {when(a.window_end)}"), ("reviewed_by", a.reviewed_by),
              ("reviewed_at", when(a.reviewed_at, a, "reviewed_at")), ("comment", a.review_comment)]
    pairs += [(f"evidence.{k}", v if isinstance(v, str) else output.json.dumps(v, ensure_ascii=False))
              for k, v in output.to_data(a.evidence).items()]
    output.fields(pairs, out)


# As ANOMALY_HEADERS: the JSON field names (the geo message's leaves for country and city).
EVENT_HEADERS = ["time", "user", "type", "outcome", "source_ip", "source_host", "destination_host", "application",
                 "action", "country_code", "city", "object", "bytes", "failure_reason", "producer", "event_id"]
EVENT_TABLE = ["time", "user", "source", "host", "action", "outcome", "country"]
EVENT_TABLE_FIT = {"fixed": ("time",), "optional": ("country", "user")}


def event_row(e: common_pb2.Event) -> list[Any]:
    return [when(e.time), e.user, enum_word(common_pb2.EventType.DESCRIPTOR, e.type),
            enum_word(common_pb2.Outcome.DESCRIPTOR, e.outcome), e.source_ip, e.source_host, e.destination_host,
            e.application, e.action, e.geo.country_code, e.geo.city, e.object, e.bytes, e.failure_reason, e.producer,
            e.event_id]


def event_table_row(e: common_pb2.Event) -> list[Any]:
    """What a person scans: where from (address, else host), where to, what (the type, the producer's own name)."""
    kind = enum_word(common_pb2.EventType.DESCRIPTOR, e.type)
    action = f"{kind} ({e.action})" if e.action and e.action != kind else kind
    return [when(e.time), e.user, e.source_ip or e.source_host, e.destination_host or e.application or e.object,
            action, enum_word(common_pb2.Outcome.DESCRIPTOR, e.outcome), e.geo.country_code]


def cmd_anomalies_events(args, stub, out):
    req = query_pb2.ListAnomalyEventsRequest(anomaly_id=args.id, page_size=args.limit, page_token=args.page_token or "")
    found, token, _total = pages(stub.ListAnomalyEvents, req, "events", args.all, args.timeout)
    if args.output == "table":
        output.table([event_table_row(e) for e in found], EVENT_TABLE, out, **EVENT_TABLE_FIT)
        more_hint(len(found), None, token, out)
        return
    emit(args.output, page("events", found, token), [event_row(e) for e in found], EVENT_HEADERS, out, items=found)


REVIEW_VERBS = {"ack": "acknowledge", "resolve": "resolve", "false-positive": "mark false positive", "reopen": "reopen"}


def confirm(question: str, assume_yes: bool) -> bool:
    """True with --yes, else the answer of a person at a terminal; without one there is nobody to ask."""
    if assume_yes:
        return True
    if not sys.stdin or not sys.stdin.isatty():
        raise UsageError(f"{question} add --yes to confirm without a prompt (no terminal to ask)")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def unchanged_words(resp: query_pb2.ReviewAnomaliesResponse) -> str:
    """Why anomalies were left as they were: "3 already acknowledged"."""
    return ", ".join(f"{c.count} already {c.key.replace('_', ' ')}" for c in resp.unchanged)


def cmd_review(args, stub, out):
    has_filter = any([args.query, args.user, args.risk, args.profile, args.source, args.status, args.dimension,
                      args.since, args.start, args.end])
    if not args.ids and not has_filter:
        raise UsageError("give anomaly ids, or a filter (e.g. -q 'user:anna.weber risk>=high') to review everything matching it")
    request = query_pb2.ReviewAnomaliesRequest(
        action=REVIEWS[args.action], ids=args.ids, filter=anomaly_filter(args) if not args.ids else None,
        comment=args.comment or "")
    if not args.ids:
        # By filter: count first, ask, then review exactly that many (the service refuses any other number).
        dry = query_pb2.ReviewAnomaliesRequest()
        dry.CopyFrom(request)
        dry.dry_run = True
        counted = stub.ReviewAnomalies(dry, timeout=args.timeout)
        if counted.updated == 0:
            emit_review(args.output, query_pb2.ReviewAnomaliesResponse(matched=counted.matched, unchanged=counted.unchanged), out)
            return
        already = f", {unchanged_words(counted)}" if counted.unchanged else ""
        question = f"{REVIEW_VERBS[args.action]} {counted.updated} anomalies ({counted.matched} match{already})?"
        if not confirm(question[0].upper() + question[1:], args.yes):
            raise UsageError("nothing changed")
        request.expected_count = counted.updated
    emit_review(args.output, stub.ReviewAnomalies(request, timeout=args.timeout), out)


def emit_review(fmt: str, resp: query_pb2.ReviewAnomaliesResponse, out: TextIO) -> None:
    why = unchanged_words(resp) or ("none matches" if resp.matched == 0 and resp.updated == 0 else "")
    emit_risk_changes(fmt, resp, resp.risk_changes, f"{resp.updated} anomalies updated" + (f" ({why})" if why else ""), out)


def emit_risk_changes(fmt: str, data: Any, changes, sentence: str, out: TextIO) -> None:
    """Each account's risk before and after a change, then (in a table) the sentence saying what changed."""
    rows = [[c.user, c.points_before, c.points_after, c.risk_before, c.risk_after] for c in changes]
    emit(fmt, data, rows, ["user", "points_before", "points_after", "risk_before", "risk_after"], out, items=list(changes))
    if fmt == "table":
        say(sentence, out)


def cmd_export(args, stub, out):
    """The server's CSV (formula cells already neutralised there), or every anomaly as JSON/NDJSON."""
    if args.output in ("json", "ndjson"):
        req = query_pb2.ListAnomaliesRequest(filter=anomaly_filter(args), page_size=500, order_by="time asc")
        found, _token, total = pages(stub.ListAnomalies, req, "anomalies", True, args.timeout)
        emit(args.output, page("anomalies", found, "", total), [], [], out, items=found)
        return
    target = open(args.file, "wb") if args.file else out.buffer if hasattr(out, "buffer") else None
    try:
        for chunk in stub.ExportAnomalies(query_pb2.ExportAnomaliesRequest(filter=anomaly_filter(args)), timeout=args.timeout):
            if target is None:
                out.write(chunk.data.decode())
            else:
                target.write(chunk.data)
        if target is not None:
            target.flush()
    finally:
        if args.file and target is not None:
            target.close()


# --- users --------------------------------------------------------------------------------

def _daily_scores(stub, users: list[str], days: int, timeout: float) -> dict[str, list[float]]:
    """Each user's anomaly score per day over the last `days` days (0 for a day without one)."""
    if not users:
        return {}
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=days)
    rng = common_pb2.TimeRange()
    rng.start.FromDatetime(first)
    req = query_pb2.ListUserScoresRequest(range=rng, users=users, page_size=1000, include_ignored=True)
    try:
        scores, _token, _total = pages(stub.ListUserScores, req, "scores", True, timeout)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:  # a stored name the filter refuses: no history shown
            raise
        scores = []
    series = {u: [0.0] * days for u in users}
    for s in scores:
        i = (s.day.ToDatetime(tzinfo=timezone.utc) - first).days
        if s.user in series and 0 <= i < days:
            series[s.user][i] = s.anomaly_score
    return series


def cmd_users_list(args, stub, out):
    req = query_pb2.ListUsersRequest(page_size=args.limit, page_token=args.page_token or "",
                                     min_risk_level=LEVELS.get(args.min_risk or "", 0), department=args.department or "",
                                     peer_group=args.peer_group or "", user_prefix=args.prefix or "",
                                     include_ignored=args.include_ignored)
    users, token, _total = pages(stub.ListUsers, req, "users", args.all, args.timeout)
    if args.output == "table":
        history = _daily_scores(stub, [u.risk.user for u in users], 14, args.timeout)
        rows = [[u.risk.user, u.risk.risk, level_name(u.risk.risk_level), u.risk.open_anomalies, u.department,
                 "learning" if u.learning else "", sparkline(history.get(u.risk.user, []))] for u in users]
        output.table(rows, ["user", "risk", "level", "open", "department", "baseline", "last 14 days"], out)
        more_hint(len(users), None, token, out)
        return
    rows = [[u.risk.user, u.risk.risk, level_name(u.risk.risk_level), u.risk.total_points, u.risk.open_anomalies,
             u.department, u.peer_group, u.learning, when(u.last_seen), u.last_anomaly_score] for u in users]
    emit(args.output, page("users", users, token), rows,
         ["user", "risk", "risk_level", "total_points", "open_anomalies", "department", "peer_group", "learning",
          "last_seen", "last_anomaly_score"], out, items=users)


def cmd_users_get(args, stub, out):
    u = stub.GetUser(query_pb2.GetUserRequest(user=args.user, recent_limit=args.recent), timeout=args.timeout)
    if args.output != "table":
        emit(args.output, u, [anomaly_row(a) for a in u.recent_anomalies], ANOMALY_HEADERS, out,
             items=list(u.recent_anomalies))
        return
    r = u.risk
    say(f"{r.user}: risk {r.risk} ({level_name(r.risk_level)}), {r.total_points} points from {r.open_anomalies} open anomalies", out)
    say(f"department {u.department or '-'}, peer group {u.peer_group or '-'}, first seen {when(u.first_seen, u, 'first_seen') or '-'}, "
        f"last seen {when(u.last_seen, u, 'last_seen') or '-'}", out)
    say(f"baseline {u.baseline_days} days{' (still learning)' if u.learning else ''}, last anomaly score {u.last_anomaly_score:.1f}"
        f"{', IGNORED' if u.ignored else ''}", out)
    series = _daily_scores(stub, [r.user], 30, args.timeout)[r.user]
    say(f"daily anomaly score, last 30 days: {sparkline(series)}  (highest {max(series):.1f})", out)
    say("\nOpen anomalies by profile:", out)
    output.table([[c.key, c.count] for c in u.open_by_profile], ["profile", "open"], out)
    say("\nRecent anomalies:", out)
    emit_anomalies("table", None, u.recent_anomalies, out)


def cmd_users_scores(args, stub, out):
    req = query_pb2.ListUserScoresRequest(range=time_range(args), users=args.users, min_score=args.min_score,
                                          page_size=args.limit, include_ignored=args.include_ignored)
    scores, _token, _total = pages(stub.ListUserScores, req, "scores", True, args.timeout)
    rows = [[s.user, day(s.day), s.anomaly_score, s.learning, s.scored_hours] for s in scores]
    emit(args.output, page("scores", scores), rows, ["user", "day", "anomaly_score", "learning", "scored_hours"], out,
         items=scores)


def card_words(card: query_pb2.ModelCard, n: int = 2) -> str:
    """The features that explain a card most, in words: 'failures 9, usually 1'."""
    top = sorted(card.features, key=lambda f: -f.share)[:n]
    return "; ".join(f"{f.name.replace('_', ' ')} {f.observed:g}, usually {f.expected:g}" for f in top)


def cmd_users_timeline(args, stub, out):
    req = query_pb2.GetUserTimelineRequest(user=args.user)
    req.day.FromDatetime(moment(args.day) if args.day else datetime.now(timezone.utc) - timedelta(days=1))
    tl = stub.GetUserTimeline(req, timeout=args.timeout)
    rows = []
    for h in tl.hours:
        for c in h.cards or [None]:
            if c is None:
                rows.append([when(h.hour)[11:16], h.events, "", "", "", ""])
                continue
            rows.append([when(h.hour)[11:16], h.events, c.model, c.event_score, "*" if c.above_threshold else "",
                         card_words(c)])
    if args.output != "table":
        emit(args.output, tl, rows, ["hour", "events", "model", "event_score", "above_threshold", "top_features"], out,
             items=list(tl.hours))
        return
    say(f"{tl.user} on {day(tl.day)}: anomaly score {tl.anomaly_score:.1f}; * marks cards at or above "
        f"{tl.display_threshold:.1f}", out)
    write_heat_map(tl, out)
    top = sorted(((c, h) for h in tl.hours for c in h.cards if c.above_threshold), key=lambda ch: -ch[0].event_score)
    say("\nTop cards:", out)
    output.table([[when(h.hour)[11:16], c.model, c.event_score, card_words(c, 3)] for c, h in top[:5]],
                 ["hour", "model", "score", "what was unusual"], out)
    say("\nHour by hour (hours with activity):", out)
    output.table([r for r in rows if r[1] or r[2]], ["hour", "events", "model", "score", "flag", "what was unusual"], out)


def write_heat_map(tl: query_pb2.UserTimeline, out: TextIO) -> None:
    """Models down, the day's 24 hours across, each cell shaded by that hour's event score."""
    scores: dict[str, list[float]] = {}
    for h in tl.hours:
        hour = h.hour.ToDatetime(tzinfo=timezone.utc).hour
        for c in h.cards:
            scores.setdefault(c.model, [0.0] * 24)[hour] = max(scores.get(c.model, [0.0] * 24)[hour], c.event_score)
    if not scores:
        return
    width = max(len(m) for m in scores)
    say("", out)
    print(f"{'':{width}}  0     6     12    18   23", file=out)
    for model in sorted(scores):
        print(f"{model:{width}}  {heat_row(scores[model], tl.display_threshold, out)}", file=out)


def cmd_risk_timeline(args, stub, out):
    tl = stub.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(
        range=time_range(args), bucket_seconds=int(duration(args.bucket).total_seconds())), timeout=args.timeout)
    rows = [[when(b.start), b.anomalies, b.risk_points, b.users, "SURGE" if b.surge else ""] for b in tl.buckets]
    emit(args.output, tl, rows, ["start", "anomalies", "risk_points", "users", "surge"], out, items=list(tl.buckets))


# --- ignore list -------------------------------------------------------------------------------

IGNORED_HEADERS = ["user", "reason", "added_by", "added_at"]


def cmd_ignore_add(args, stub, out):
    u = stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user=args.user, reason=args.reason or ""), timeout=args.timeout)
    emit(args.output, u, [[u.user, u.reason, u.added_by, when(u.added_at)]], IGNORED_HEADERS, out)


def cmd_ignore_remove(args, stub, out):
    stub.RemoveIgnoredUser(query_pb2.RemoveIgnoredUserRequest(user=args.user), timeout=args.timeout)
    if args.output == "table":
        say(f"{args.user} removed from the ignore list", out)
    else:
        emit(args.output, {"removed": args.user}, [[args.user]], ["removed"], out)


def cmd_ignore_list(args, stub, out):
    users, _token, _total = pages(stub.ListIgnoredUsers, query_pb2.ListIgnoredUsersRequest(page_size=500), "users",
                                   True, args.timeout)
    emit(args.output, page("users", users), [[u.user, u.reason, u.added_by, when(u.added_at)] for u in users],
         IGNORED_HEADERS, out, items=users)


# --- argument parsing ------------------------------------------------------------------------------

def _filter_options(p: argparse.ArgumentParser) -> None:
    add_range_options(p)
    p.add_argument("-q", "--query", nargs="+", help=QUERY_HELP)
    p.add_argument("--user", action="append")
    p.add_argument("--risk", action="append", choices=LEVELS)
    p.add_argument("--profile", action="append", help="profile id, name or kind, or model name")
    p.add_argument("--source", choices=SOURCES)
    p.add_argument("--status", action="append", choices=STATUSES)
    p.add_argument("--dimension", action="append")
    p.add_argument("--include-ignored", action="store_true")


def register(sub) -> None:
    common = common_options()
    p = leaf(sub, "summary", cmd_summary, "anomaly totals and the riskiest users", common)
    add_range_options(p)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--include-ignored", action="store_true")

    anomalies = sub.add_parser("anomalies", help="list, inspect, review and export anomalies").add_subparsers(
        dest="anomalies_command", required=True, metavar="ACTION")
    p = leaf(anomalies, "list", cmd_anomalies_list, "anomalies matching a filter", common)
    _filter_options(p)
    p.add_argument("--order", default="time desc", help="'time desc', 'time asc' or 'risk desc'")
    p.add_argument("--limit", type=int, default=50, help="page size")
    p.add_argument("--page-token")
    p.add_argument("--all", action="store_true", help="follow every page")
    p = leaf(anomalies, "get", cmd_anomalies_get, "one anomaly with its evidence", common)
    p.add_argument("id")
    p = leaf(anomalies, "events", cmd_anomalies_events, "the stored events behind an anomaly, oldest first", common)
    p.add_argument("id")
    p.add_argument("--limit", type=int, default=50, help="page size")
    p.add_argument("--page-token")
    p.add_argument("--all", action="store_true", help="follow every page")
    for action, help in (("ack", "acknowledge"), ("resolve", "resolve"), ("false-positive", "mark false positive"), ("reopen", "reopen")):
        p = leaf(anomalies, action, cmd_review, f"{help} anomalies by id, or every anomaly matching a filter", common)
        p.add_argument("ids", nargs="*")
        p.add_argument("--comment")
        p.add_argument("-y", "--yes", action="store_true",
                       help="review what a filter matches without asking (the count is still checked)")
        _filter_options(p)
        p.set_defaults(action=action)
    p = leaf(anomalies, "export", cmd_export, "CSV of every anomaly matching a filter", common)
    _filter_options(p)
    p.add_argument("--file", help="write to this file instead of stdout")

    users = sub.add_parser("users", help="users by risk, one user, daily scores, hourly timeline").add_subparsers(
        dest="users_command", required=True, metavar="ACTION")
    p = leaf(users, "list", cmd_users_list, "users ordered by risk", common)
    p.add_argument("--min-risk", choices=LEVELS)
    p.add_argument("--department")
    p.add_argument("--peer-group")
    p.add_argument("--prefix")
    p.add_argument("--include-ignored", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--page-token")
    p.add_argument("--all", action="store_true")
    p = leaf(users, "get", cmd_users_get, "a user's risk, anomalies and baseline", common)
    p.add_argument("user")
    p.add_argument("--recent", type=int, default=20)
    p = leaf(users, "scores", cmd_users_scores, "daily anomaly scores", common)
    p.add_argument("users", nargs="*")
    add_range_options(p)
    p.add_argument("--min-score", type=float, default=0.0)
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--include-ignored", action="store_true")
    p = leaf(users, "timeline", cmd_users_timeline, "a user's day hour by hour", common)
    p.add_argument("user")
    p.add_argument("--day", help="the UTC date (default yesterday)")

    p = leaf(sub, "risk-timeline", cmd_risk_timeline, "risk over time with surges", common)
    add_range_options(p)
    p.add_argument("--bucket", default="1h", help="bucket size: 15m, 1h, 1d, ...")

    ignore = sub.add_parser("ignore", help="the ignore list").add_subparsers(dest="ignore_command", required=True, metavar="ACTION")
    p = leaf(ignore, "add", cmd_ignore_add, "hide a user", common)
    p.add_argument("user")
    p.add_argument("--reason")
    p = leaf(ignore, "remove", cmd_ignore_remove, "stop hiding a user", common)
    p.add_argument("user")
    leaf(ignore, "list", cmd_ignore_list, "hidden users", common)
