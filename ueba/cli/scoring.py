"""`ueba scoring run|runs|peers|models`: the scorer service from the command line."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

import grpc
from google.protobuf.json_format import MessageToDict

from ueba.client.channel import add_channel_options, channel_config, open_channel
from ueba.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc


def register(sub) -> None:
    p = sub.add_parser("scoring", help="behaviour-model scoring: run on demand, run history, peer groups, models")
    p.add_argument("--address", default=os.environ.get("UEBA_SCORER_ADDRESS", "127.0.0.1:50053"), help="scorer host:port")
    p.add_argument("--token", default=os.environ.get("UEBA_TOKEN"), help="bearer token (admin role)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_channel_options(p, token=False)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="score a window now (default: the last 24 complete hours)")
    run.add_argument("--start", help="ISO time, e.g. 2026-10-01T00:00Z")
    run.add_argument("--end", help="ISO time (exclusive)")
    run.add_argument("--user", action="append", default=[], help="score only this user (repeatable)")
    run.set_defaults(func=_run)
    runs = actions.add_parser("runs", help="run history, newest first; with an id, that run")
    runs.add_argument("id", nargs="?")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=_runs)
    peers = actions.add_parser("peers", help="peer groups and their members")
    peers.add_argument("--limit", type=int, default=100)
    peers.set_defaults(func=_peers)
    models = actions.add_parser("models", help="the behaviour models, their features and weights")
    models.set_defaults(func=_models)


def _stub(args) -> tuple[scorer_pb2_grpc.ScorerServiceStub, list]:
    channel = open_channel(args.address, channel_config(args))
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    return scorer_pb2_grpc.ScorerServiceStub(channel), metadata


def _time(value: str, option: str):
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"{option}: not an ISO time: {value!r}")
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _call(fn, request, metadata):
    try:
        return fn(request, metadata=metadata)
    except grpc.RpcError as exc:
        print(f"scorer: {exc.code().name}: {exc.details()}", file=sys.stderr)
        raise SystemExit(1)


def _print_runs(runs, as_json: bool) -> None:
    if as_json:
        print(json.dumps([MessageToDict(r) for r in runs], indent=2))
        return
    print(f"{'id':36}  {'status':9}  {'trigger':9}  {'range':33}  users  hours  scores  anomalies  learning")
    for r in runs:
        status = scorer_pb2.RunStatus.Name(r.status).removeprefix("RUN_STATUS_").lower()
        trigger = scorer_pb2.RunTrigger.Name(r.trigger).removeprefix("RUN_TRIGGER_").lower()
        window = f"{r.range.start.ToDatetime():%Y-%m-%d %H:%M} - {r.range.end.ToDatetime():%m-%d %H:%M}"
        print(f"{r.id:36}  {status:9}  {trigger:9}  {window:33}  {r.users_scored:5}  {r.hours_scored:5}  "
              f"{r.event_scores:6}  {r.anomalies:9}  {r.learning_users:8}")
        if r.error:
            print(f"    error: {r.error}")


def _run(args) -> int:
    stub, md = _stub(args)
    rng = common_pb2.TimeRange()
    if args.start:
        rng.start.FromDatetime(_time(args.start, "--start"))
    if args.end:
        rng.end.FromDatetime(_time(args.end, "--end"))
    run = _call(stub.RunScoring, scorer_pb2.RunScoringRequest(range=rng, users=args.user), md)
    _print_runs([run], args.json)
    return 0 if run.status == scorer_pb2.RUN_STATUS_SUCCEEDED else 1


def _runs(args) -> int:
    stub, md = _stub(args)
    if args.id:
        _print_runs([_call(stub.GetScoringRun, scorer_pb2.GetScoringRunRequest(id=args.id), md)], args.json)
        return 0
    runs, token = [], ""
    while len(runs) < args.limit:
        page = _call(stub.ListScoringRuns, scorer_pb2.ListScoringRunsRequest(page_size=min(100, args.limit), page_token=token), md)
        runs.extend(page.runs)
        token = page.next_page_token
        if not token:
            break
    _print_runs(runs[: args.limit], args.json)
    return 0


def _peers(args) -> int:
    stub, md = _stub(args)
    groups, token = [], ""
    while len(groups) < args.limit:
        page = _call(stub.ListPeerGroups, scorer_pb2.ListPeerGroupsRequest(page_size=100, page_token=token), md)
        groups.extend(page.groups)
        token = page.next_page_token
        if not token:
            break
    groups = groups[: args.limit]
    if args.json:
        print(json.dumps([MessageToDict(g) for g in groups], indent=2))
        return 0
    for g in groups:
        members = ", ".join(g.members[:8]) + (" ..." if g.member_count > 8 else "")
        print(f"{g.id:32}  {g.method:10}  {g.member_count:5}  {members}")
    return 0


def _models(args) -> int:
    stub, md = _stub(args)
    models = _call(stub.ListModels, scorer_pb2.ListModelsRequest(), md).models
    if args.json:
        print(json.dumps([MessageToDict(m) for m in models], indent=2))
        return 0
    for m in models:
        print(f"{m.name} (weight {m.weight:g}): {m.description}")
        for f in m.features:
            print(f"    {f.name:22} {f.description}")
    return 0
