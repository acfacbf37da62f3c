"""`ueba simulate`: generate an organisation's activity with labelled scenarios, to a JSON-lines
file and/or streamed into the ingest service."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterable, Iterator

from google.protobuf.json_format import MessageToDict

from ueba.cli.output import add_output_option, emit, fields
from ueba.client.channel import add_channel_options, channel_config
from ueba.simulator import LABEL_KINDS, SimulationConfig, simulate, write_labels
from ueba.v1.common_pb2 import Event


def register(sub) -> None:
    p = sub.add_parser(
        "simulate", help="generate simulated activity with labelled attack scenarios",
        description="Simulate an organisation's users over a period (deterministic per seed) and write the "
                    "events as JSON lines and/or stream them into ingest. Labels of the injected scenarios are "
                    "written as JSON beside the events.")
    p.add_argument("--users", type=_positive, default=200, help="number of users (default 200)")
    p.add_argument("--days", type=_positive, default=30, help="number of days (default 30)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--start", type=_start, default=SimulationConfig().start,
                   help="first day, ISO date or time; UTC unless it says otherwise (default 2026-10-01)")
    p.add_argument("--no-scenarios", action="store_true", help="a clean organisation: no injected scenarios")
    p.add_argument("--scenarios-per-kind", type=_non_negative, default=None,
                   help="scenarios of each kind (default: about one per 100 user-months, at least one)")
    p.add_argument("--events", metavar="FILE", help="JSON-lines file for the events ('-' for standard output)")
    p.add_argument("--labels", help="JSON file for the labels (default: <events>.labels.json)")
    p.add_argument("--ingest", metavar="HOST:PORT", help="stream the events into the ingest service at this address")
    p.add_argument("--batch-size", type=_positive, default=1000, help="events per ingest batch (default 1000)")
    add_output_option(p)  # of the closing summary
    add_channel_options(p)
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _start(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def event_to_json(event: Event) -> str:
    return json.dumps(MessageToDict(event, preserving_proto_field_name=True), separators=(",", ":"))


def _tee_to_file(events: Iterable[Event], out: IO[str]) -> Iterator[Event]:
    for event in events:
        out.write(event_to_json(event))
        out.write("\n")
        yield event


class _Counter:
    """Counts the events that go by and moves the progress bar (which may be disabled)."""

    def __init__(self, bar=None):
        self.bar = bar
        self.n = 0

    def __call__(self, events: Iterable[Event]) -> Iterator[Event]:
        for event in events:
            yield event
            self.n += 1
            if self.bar is not None and self.n % 1000 == 0:
                self.bar.update(1000)


def run(args) -> int:
    if not args.events and not args.ingest:
        print("ueba simulate: give --events FILE and/or --ingest HOST:PORT", file=sys.stderr)
        return 2
    config = SimulationConfig(users=args.users, days=args.days, seed=args.seed, start=args.start,
                              scenarios=not args.no_scenarios, scenarios_per_kind=args.scenarios_per_kind)
    sim = simulate(config)
    labels_path = args.labels or (f"{args.events}.labels.json" if args.events and args.events != "-" else None)
    if labels_path:
        Path(labels_path).parent.mkdir(parents=True, exist_ok=True)
        write_labels(labels_path, sim.labels)
    elif sim.labels:
        print(f"ueba simulate: {len(sim.labels)} labels not written (give --labels FILE)", file=sys.stderr)

    from tqdm import tqdm

    with ExitStack() as stack:
        events: Iterable[Event] = sim.events()
        if args.events:
            if args.events == "-":
                out = sys.stdout
            else:
                Path(args.events).parent.mkdir(parents=True, exist_ok=True)
                out = stack.enter_context(open(args.events, "w", encoding="utf-8"))
            events = _tee_to_file(events, out)
        # The bar shows acknowledged events when ingesting, generated ones otherwise.
        bar = stack.enter_context(tqdm(unit=" events", file=sys.stderr, mininterval=0.5, disable=None,
                                       desc="ingest" if args.ingest else "simulate"))
        counter = _Counter(None if args.ingest else bar)
        events = counter(events)
        totals = None
        if args.ingest:
            from ueba.client.ingest import IngestClient, IngestError  # lazily: only this path needs gRPC

            try:
                with IngestClient(args.ingest, batch_size=args.batch_size, channel=channel_config(args)) as client:
                    totals = client.send(events, progress=bar.update)
            except IngestError as exc:
                bar.close()
                print(f"ueba simulate: ingest at {args.ingest} failed: {exc}", file=sys.stderr)
                return 1
        else:
            for _ in events:
                pass
            bar.update(counter.n % 1000)
        produced = counter.n

    by_kind = {kind: sum(1 for label in sim.labels if label.kind == kind) for kind in LABEL_KINDS}
    summary = {"events": produced, "users": len(sim.users), "days": config.days, "seed": config.seed,
               "labels": len(sim.labels), "labels_by_kind": {k: v for k, v in by_kind.items() if v}}
    if args.events and args.events != "-":
        summary["events_file"] = args.events
    if labels_path:
        summary["labels_file"] = labels_path
    if totals is not None:
        summary["ingest"] = {
            "sent": totals.sent, "accepted": totals.accepted, "duplicates": totals.duplicates,
            "rejected": totals.rejected,
        }
    out = sys.stderr if args.events == "-" else sys.stdout
    if args.output == "table":
        fields([(k, json.dumps(v) if isinstance(v, dict) else v) for k, v in summary.items()], out)
    else:
        emit(args.output, summary, [list(summary.values())], list(summary), out)
    if totals is not None and totals.rejected:
        for rejection in totals.rejections[:10]:
            print(f"rejected event {rejection.index}: {rejection.field}: {rejection.reason}", file=sys.stderr)
        return 1
    return 0
