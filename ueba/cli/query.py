"""`ueba summary | anomalies | users | risk-timeline | ignore`: the query service for people.

Every command talks gRPC to the query service at --address (default
$UEBA_QUERY_ADDRESS or 127.0.0.1:50054) and prints a table, or JSON or CSV with
--output. A service that cannot be reached is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TextIO

import grpc

from ueba.cli import output
from ueba.cli.output import day, emit, when
from ueba.client.channel import ChannelConfig, add_channel_options, channel_config, open_channel
from ueba.v1 import common_pb2, query_pb2, query_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50054"
LEVELS = {"low": common_pb2.RISK_LEVEL_LOW, "medium": common_pb2.RISK_LEVEL_MEDIUM,
          "high": common_pb2.RISK_LEVEL_HIGH, "critical": common_pb2.RISK_LEVEL_CRITICAL}
STATUSES = {"new": common_pb2.ANOMALY_STATUS_NEW, "acknowledged": common_pb2.ANOMALY_STATUS_ACKNOWLEDGED,
            "resolved": common_pb2.ANOMALY_STATUS_RESOLVED, "false_positive": common_pb2.ANOMALY_STATUS_FALSE_POSITIVE}
SOURCES = {"rule": common_pb2.ANOMALY_SOURCE_RULE, "model": common_pb2.ANOMALY_SOURCE_MODEL}
REVIEWS = {"ack": query_pb2.REVIEW_ACTION_ACKNOWLEDGE, "resolve": query_pb2.REVIEW_ACTION_RESOLVE,
           "false-positive": query_pb2.REVIEW_ACTION_FALSE_POSITIVE, "reopen": query_pb2.REVIEW_ACTION_REOPEN}
_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class UsageError(Exception):
    pass


def level_name(value: int) -> str:
    return common_pb2.RiskLevel.Name(value).removeprefix("RISK_LEVEL_").lower()


def status_name(value: int) -> str:
    return common_pb2.AnomalyStatus.Name(value).removeprefix("ANOMALY_STATUS_").lower()


def source_name(value: int) -> str:
    return common_pb2.AnomalySource.Name(value).removeprefix("ANOMALY_SOURCE_").lower()


def duration(text: str) -> timedelta:
    m = _AGE.match(text.strip().lower())
    if not m:
        raise UsageError(f"{text!r} is not a duration like 30m, 24h, 7d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def moment(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO date or time (2026-10-01 or 2026-10-01T12:00Z)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def time_range(args) -> common_pb2.TimeRange | None:
    start = end = None
    if getattr(args, "since", None):
        start = datetime.now(timezone.utc) - duration(args.since)
    if getattr(args, "start", None):
        start = moment(args.start)
    if getattr(args, "end", None):
        end = moment(args.end)
    if start is None and end is None:
        return None
    rng = common_pb2.TimeRange()
    if start:
        rng.start.FromDatetime(start)
    if end:
        rng.end.FromDatetime(end)
    return rng


# --- calls ----------------------------------------------------------------------

def _stub(args) -> tuple[grpc.Channel, query_pb2_grpc.QueryServiceStub]:
    channel = open_channel(args.address, channel_config(args))
    return channel, query_pb2_grpc.QueryServiceStub(channel)


def _explain(exc: grpc.RpcError, address: str) -> tuple[str, int]:
    code = exc.code() if hasattr(exc, "code") else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return (f"ueba: cannot reach the query service at {address} ({code.name.lower()}); "
                "is it running? set --address or UEBA_QUERY_ADDRESS"), 2
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"ueba: {code.name if code else 'error'}: {details}", 1


def _command(fn: Callable[[Any, query_pb2_grpc.QueryServiceStub, TextIO], None]) -> Callable[[Any], int]:
    def run(args) -> int:
        channel, stub = _stub(args)
        try:
            fn(args, stub, sys.stdout)
            return 0
        except grpc.RpcError as exc:
            message, code = _explain(exc, args.address)
            print(message, file=sys.stderr)
            return code
        except UsageError as exc:
            print(f"ueba: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `ueba ... | head`
            return 0
        finally:
            channel.close()

    return run


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


ANOMALY_HEADERS = ["id", "time", "user", "risk", "level", "status", "source", "profile", "dimension", "description"]


def anomaly_row(a: common_pb2.Anomaly) -> list[Any]:
    return [a.id, when(a.time), a.user, a.risk_score, level_name(a.risk_level), status_name(a.status),
            source_name(a.source), a.profile_name, a.dimension, a.description]


# --- summary ------------------------------------------------------------------------

def write_summary(s: query_pb2.Summary, out: TextIO) -> None:
    print(f"Anomalies {when(s.range.start)} to {when(s.range.end)}: {s.total_anomalies:,} "
          f"({s.new_anomalies:,} new, {s.reviewed_anomalies:,} reviewed, {s.total_points:,} risk points); "
          f"{s.users_seen:,} users seen, {s.events:,} events", file=out)
    for title, counts in (("risk level", s.by_risk_level), ("profile", s.by_profile), ("dimension", s.by_dimension)):
        print(f"\nBy {title}:", file=out)
        output.table([[c.key, c.count] for c in counts], [title, "anomalies"], out)
    print("\nRiskiest users:", file=out)
    output.table([[u.user, u.risk, level_name(u.risk_level), u.total_points, u.open_anomalies] for u in s.riskiest_users],
                 ["user", "risk", "level", "points", "open"], out)


def cmd_summary(args, stub, out):
    s = stub.GetSummary(query_pb2.GetSummaryRequest(range=time_range(args), top_users=args.top, include_ignored=args.include_ignored),
                        timeout=args.timeout)
    if args.output == "table":
        write_summary(s, out)
        return
    rows = [["risk_level", c.key, c.count] for c in s.by_risk_level] + [["profile", c.key, c.count] for c in s.by_profile]
    rows += [["dimension", c.key, c.count] for c in s.by_dimension] + [["status", c.key, c.count] for c in s.by_status]
    rows += [["user_risk", u.user, u.risk] for u in s.riskiest_users]
    emit(args.output, s, rows, ["section", "key", "value"], out)


def print_summary(address: str, out: TextIO = sys.stdout, timeout: float = 30.0) -> bool:
    """Prints the summary and riskiest users (what `ueba up` shows once started); False when unreachable."""
    try:
        with open_channel(address, ChannelConfig.from_env()) as channel:
            s = query_pb2_grpc.QueryServiceStub(channel).GetSummary(query_pb2.GetSummaryRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        print(_explain(exc, address)[0], file=out)
        return False
    write_summary(s, out)
    return True


# --- anomalies ---------------------------------------------------------------------------

def cmd_anomalies_list(args, stub, out):
    token, found, total = args.page_token or "", [], 0
    while True:
        resp = stub.ListAnomalies(query_pb2.ListAnomaliesRequest(
            filter=anomaly_filter(args), page_size=args.limit, page_token=token, order_by=args.order), timeout=args.timeout)
        found.extend(resp.anomalies)
        total = total or resp.total_size
        token = resp.next_page_token
        if not args.all or not token:
            break
    emit(args.output, resp if not args.all else found, [anomaly_row(a) for a in found], ANOMALY_HEADERS, out)
    if args.output == "table":
        more = f"; next page: --page-token {token}" if token else ""
        print(f"{len(found)} shown of {total}{'+' if resp.total_size_capped else ''}{more}", file=out)


def cmd_anomalies_get(args, stub, out):
    a = stub.GetAnomaly(query_pb2.GetAnomalyRequest(id=args.id), timeout=args.timeout)
    if args.output != "table":
        emit(args.output, a, [anomaly_row(a)], ANOMALY_HEADERS, out)
        return
    fields = list(zip(ANOMALY_HEADERS, anomaly_row(a)))
    fields += [("window", f"{when(a.window_start)} to {when(a.window_end)}"), ("reviewed by", a.reviewed_by),
               ("reviewed at", when(a.reviewed_at, a, "reviewed_at")), ("comment", a.review_comment)]
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        print(f"{k.ljust(width)}  {v}", file=out)
    print("evidence:", file=out)
    output.message_json(a.evidence, out)


def cmd_review(args, stub, out):
    has_filter = any([args.query, args.user, args.risk, args.profile, args.source, args.status, args.dimension,
                      args.since, args.start, args.end])
    if not args.ids and not has_filter:
        raise UsageError("give anomaly ids, or a filter (e.g. -q 'user:alice risk>=high') to review everything matching it")
    resp = stub.ReviewAnomalies(query_pb2.ReviewAnomaliesRequest(
        action=REVIEWS[args.action], ids=args.ids, filter=anomaly_filter(args) if not args.ids else None,
        comment=args.comment or ""), timeout=args.timeout)
    rows = [[c.user, c.points_before, c.points_after, c.risk_before, c.risk_after] for c in resp.risk_changes]
    emit(args.output, resp, rows, ["user", "points_before", "points_after", "risk_before", "risk_after"], out)
    if args.output == "table":
        print(f"{resp.updated} anomalies updated", file=out)


def cmd_export(args, stub, out):
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

def cmd_users_list(args, stub, out):
    req = query_pb2.ListUsersRequest(page_size=args.limit, page_token=args.page_token or "",
                                     min_risk_level=LEVELS.get(args.min_risk or "", 0), department=args.department or "",
                                     peer_group=args.peer_group or "", user_prefix=args.prefix or "",
                                     include_ignored=args.include_ignored)
    users = []
    while True:
        resp = stub.ListUsers(req, timeout=args.timeout)
        users.extend(resp.users)
        if not args.all or not resp.next_page_token:
            break
        req.page_token = resp.next_page_token
    rows = [[u.risk.user, u.risk.risk, level_name(u.risk.risk_level), u.risk.total_points, u.risk.open_anomalies,
             u.department, u.peer_group, u.learning, when(u.last_seen), u.last_anomaly_score] for u in users]
    emit(args.output, resp if not args.all else users, rows,
         ["user", "risk", "level", "points", "open", "department", "peer_group", "learning", "last_seen", "last_score"], out)
    if args.output == "table" and resp.next_page_token:
        print(f"next page: --page-token {resp.next_page_token}", file=out)


def cmd_users_get(args, stub, out):
    u = stub.GetUser(query_pb2.GetUserRequest(user=args.user, recent_limit=args.recent), timeout=args.timeout)
    if args.output != "table":
        emit(args.output, u, [anomaly_row(a) for a in u.recent_anomalies], ANOMALY_HEADERS, out)
        return
    r = u.risk
    print(f"{r.user}: risk {r.risk} ({level_name(r.risk_level)}), {r.total_points} points from {r.open_anomalies} open anomalies", file=out)
    print(f"department {u.department or '-'}, peer group {u.peer_group or '-'}, first seen {when(u.first_seen, u, 'first_seen') or '-'}, "
          f"last seen {when(u.last_seen, u, 'last_seen') or '-'}", file=out)
    print(f"baseline {u.baseline_days} days{' (still learning)' if u.learning else ''}, last anomaly score {u.last_anomaly_score:.1f}"
          f"{', IGNORED' if u.ignored else ''}", file=out)
    print("\nOpen anomalies by profile:", file=out)
    output.table([[c.key, c.count] for c in u.open_by_profile], ["profile", "open"], out)
    print("\nRecent anomalies:", file=out)
    output.table([anomaly_row(a) for a in u.recent_anomalies], ANOMALY_HEADERS, out)


def cmd_users_scores(args, stub, out):
    req = query_pb2.ListUserScoresRequest(range=time_range(args), users=args.users, min_score=args.min_score,
                                          page_size=args.limit, include_ignored=args.include_ignored)
    scores = []
    while True:
        resp = stub.ListUserScores(req, timeout=args.timeout)
        scores.extend(resp.scores)
        if not resp.next_page_token:
            break
        req.page_token = resp.next_page_token
    rows = [[s.user, day(s.day), s.anomaly_score, s.learning, s.scored_hours] for s in scores]
    emit(args.output, scores, rows, ["user", "day", "score", "learning", "scored_hours"], out)


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
            top = ", ".join(f"{f.name} {f.observed:g} vs {f.expected:g}" for f in sorted(c.features, key=lambda f: -f.share)[:2])
            rows.append([when(h.hour)[11:16], h.events, c.model, c.event_score, "*" if c.above_threshold else "", top])
    if args.output == "table":
        print(f"{tl.user} on {day(tl.day)}: anomaly score {tl.anomaly_score:.1f}; * marks cards at or above {tl.display_threshold:.1f}", file=out)
    emit(args.output, tl, rows, ["hour", "events", "model", "score", "flag", "top_features"], out)


def cmd_risk_timeline(args, stub, out):
    tl = stub.GetRiskTimeline(query_pb2.GetRiskTimelineRequest(
        range=time_range(args), bucket_seconds=int(duration(args.bucket).total_seconds())), timeout=args.timeout)
    rows = [[when(b.start), b.anomalies, b.risk_points, b.users, "SURGE" if b.surge else ""] for b in tl.buckets]
    emit(args.output, tl, rows, ["start", "anomalies", "risk_points", "users", "surge"], out)


# --- ignore list -------------------------------------------------------------------------------

def cmd_ignore_add(args, stub, out):
    u = stub.AddIgnoredUser(query_pb2.AddIgnoredUserRequest(user=args.user, reason=args.reason or ""), timeout=args.timeout)
    emit(args.output, u, [[u.user, u.reason, u.added_by, when(u.added_at)]], ["user", "reason", "added_by", "added_at"], out)


def cmd_ignore_remove(args, stub, out):
    resp = stub.RemoveIgnoredUser(query_pb2.RemoveIgnoredUserRequest(user=args.user), timeout=args.timeout)
    if args.output == "json":
        output.message_json(resp, out)
    else:
        print(f"{args.user} removed from the ignore list", file=out)


def cmd_ignore_list(args, stub, out):
    req, users = query_pb2.ListIgnoredUsersRequest(page_size=500), []
    while True:
        resp = stub.ListIgnoredUsers(req, timeout=args.timeout)
        users.extend(resp.users)
        if not resp.next_page_token:
            break
        req.page_token = resp.next_page_token
    emit(args.output, users, [[u.user, u.reason, u.added_by, when(u.added_at)] for u in users],
         ["user", "reason", "added_by", "added_at"], out)


# --- argument parsing ------------------------------------------------------------------------------

def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--address", default=os.environ.get("UEBA_QUERY_ADDRESS", DEFAULT_ADDRESS),
                   help="query service host:port (default $UEBA_QUERY_ADDRESS or %(default)s)")
    p.add_argument("--output", "-o", choices=output.FORMATS, default="table")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer")
    add_channel_options(p)
    return p


def _range_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="only the last 30m, 24h, 7d, ...")
    p.add_argument("--from", dest="start", help="start, ISO date or time")
    p.add_argument("--to", dest="end", help="end (exclusive), ISO date or time")


def _filter_options(p: argparse.ArgumentParser) -> None:
    _range_options(p)
    p.add_argument("-q", "--query", nargs="+", help="query string, e.g. user:alice risk>=high \"new country\"")
    p.add_argument("--user", action="append")
    p.add_argument("--risk", action="append", choices=LEVELS)
    p.add_argument("--profile", action="append", help="profile id, name or kind, or model name")
    p.add_argument("--source", choices=SOURCES)
    p.add_argument("--status", action="append", choices=STATUSES)
    p.add_argument("--dimension", action="append")
    p.add_argument("--include-ignored", action="store_true")


def _leaf(sub, name: str, fn, help: str, common) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, parents=[common])
    p.set_defaults(func=_command(fn))
    return p


def register(sub) -> None:
    common = _common()
    p = _leaf(sub, "summary", cmd_summary, "anomaly totals and the riskiest users", common)
    _range_options(p)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--include-ignored", action="store_true")

    anomalies = sub.add_parser("anomalies", help="list, inspect, review and export anomalies").add_subparsers(
        dest="anomalies_command", required=True, metavar="ACTION")
    p = _leaf(anomalies, "list", cmd_anomalies_list, "anomalies matching a filter", common)
    _filter_options(p)
    p.add_argument("--order", default="time desc", help="'time desc', 'time asc' or 'risk desc'")
    p.add_argument("--limit", type=int, default=50, help="page size")
    p.add_argument("--page-token")
    p.add_argument("--all", action="store_true", help="follow every page")
    p = _leaf(anomalies, "get", cmd_anomalies_get, "one anomaly with its evidence", common)
    p.add_argument("id")
    for action, help in (("ack", "acknowledge"), ("resolve", "resolve"), ("false-positive", "mark false positive"), ("reopen", "reopen")):
        p = _leaf(anomalies, action, cmd_review, f"{help} anomalies by id, or every anomaly matching a filter", common)
        p.add_argument("ids", nargs="*")
        p.add_argument("--comment")
        _filter_options(p)
        p.set_defaults(action=action)
    p = _leaf(anomalies, "export", cmd_export, "CSV of every anomaly matching a filter", common)
    _filter_options(p)
    p.add_argument("--file", help="write to this file instead of stdout")

    users = sub.add_parser("users", help="users by risk, one user, daily scores, hourly timeline").add_subparsers(
        dest="users_command", required=True, metavar="ACTION")
    p = _leaf(users, "list", cmd_users_list, "users ordered by risk", common)
    p.add_argument("--min-risk", choices=LEVELS)
    p.add_argument("--department")
    p.add_argument("--peer-group")
    p.add_argument("--prefix")
    p.add_argument("--include-ignored", action="store_true")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--page-token")
    p.add_argument("--all", action="store_true")
    p = _leaf(users, "get", cmd_users_get, "a user's risk, anomalies and baseline", common)
    p.add_argument("user")
    p.add_argument("--recent", type=int, default=20)
    p = _leaf(users, "scores", cmd_users_scores, "daily anomaly scores", common)
    p.add_argument("users", nargs="*")
    _range_options(p)
    p.add_argument("--min-score", type=float, default=0.0)
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--include-ignored", action="store_true")
    p = _leaf(users, "timeline", cmd_users_timeline, "a user's day hour by hour", common)
    p.add_argument("user")
    p.add_argument("--day", help="the UTC date (default yesterday)")

    p = _leaf(sub, "risk-timeline", cmd_risk_timeline, "risk over time with surges", common)
    _range_options(p)
    p.add_argument("--bucket", default="1h", help="bucket size: 15m, 1h, 1d, ...")

    ignore = sub.add_parser("ignore", help="the ignore list").add_subparsers(dest="ignore_command", required=True, metavar="ACTION")
    p = _leaf(ignore, "add", cmd_ignore_add, "hide a user", common)
    p.add_argument("user")
    p.add_argument("--reason")
    p = _leaf(ignore, "remove", cmd_ignore_remove, "stop hiding a user", common)
    p.add_argument("user")
    _leaf(ignore, "list", cmd_ignore_list, "hidden users", common)
