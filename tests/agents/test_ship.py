"""`ueba ship`: batching, resume state and summary; then real files into a running ingest (and profiles)."""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path

import psycopg
import pytest

from ueba.cli.main import main
from ueba.cli.ship import ShipState, exit_code, fingerprint, format_summary, ship_files
from ueba.client.ingest import SendTotals
from ueba.db import libpq_url
from ueba.launcher import start_service
from ueba.parsers import ParseOptions
from ueba.parsers.files import read_file, sources
from ueba.v1 import ingest_pb2

from .helpers import drop_database, fresh_database, ingest_and_profiles, ingest_env

LINES = [f"Feb 10 06:{m:02d}:{s:02d} bastion sshd[{m}{s}]: Failed password for u{m} from 10.0.{m}.{s} port 22 ssh2" for m in range(10) for s in range(0, 60, 6)]


class RecordingClient:
    """Stands in for IngestClient: records what is sent; can fail after some calls or reject an event."""

    def __init__(self, interrupt_after_calls: int | None = None, reject_index: int | None = None):
        self.calls: list[list] = []
        self.interrupt_after_calls = interrupt_after_calls
        self.reject_index = reject_index

    def send(self, events, progress=None):
        events = list(events)
        if self.interrupt_after_calls is not None and len(self.calls) >= self.interrupt_after_calls:
            raise KeyboardInterrupt
        self.calls.append(events)
        totals = SendTotals(sent=len(events), accepted=len(events))
        if self.reject_index is not None and self.reject_index < len(events):
            totals.accepted -= 1
            totals.rejected = 1
            totals.rejections.append(ingest_pb2.Rejection(index=self.reject_index, field="time", reason="too old"))
        return totals

    @staticmethod
    def rejected_of(path: Path) -> list[list]:
        """The events a reject_index=3 client rejects in a file of LINES: the 4th of each chunk of 40."""
        events = read_file(path, options=ParseOptions(year=2026)).events
        return [[events[i + 3]] for i in range(0, len(events), 40)]


@pytest.fixture
def log_file(tmp_path) -> Path:
    path = tmp_path / "auth.log"
    path.write_text("\n".join(LINES[:50]) + "\nnot syslog at all\n" + "\n".join(LINES[50:]) + "\n")
    return path


def test_batches_summary_and_unparseable_lines(log_file, tmp_path):
    client = RecordingClient(reject_index=3)
    summary = ship_files([log_file], client, batch_size=5, state_dir=tmp_path / "state", options=ParseOptions(year=2026))
    [f] = summary.files
    assert (f.read, f.events, f.unparseable, f.sent) == (101, 100, 1, 100)
    assert f.errors == [(51, "not a syslog line: no 'Mmm dd hh:mm:ss host' or ISO timestamp header")]
    assert [len(c) for c in client.calls] == [40, 40, 20]  # chunks of 8 batches: the unit of resume
    assert f.rejected == 3 and f.rejections[0] == (4, "time: too old")  # index 3 of the first chunk is line 4
    text = format_summary(summary)
    assert "unparseable line 51" in text and "rejected line 4: time: too old" in text
    assert "sent 100, accepted 97, duplicates 0, rejected 3" in text


def test_interrupted_run_resumes_after_the_last_acknowledged_chunk(log_file, tmp_path):
    state_dir = tmp_path / "state"
    first = ship_files([log_file], RecordingClient(interrupt_after_calls=1), batch_size=5, state_dir=state_dir, options=ParseOptions(year=2026))
    assert first.interrupted and first.files[0].sent == 40
    [state_file] = state_dir.glob("*.json")
    saved = json.loads(state_file.read_text())
    assert saved["line"] == 40 and saved["offset"] == sum(len(line) + 1 for line in LINES[:40])

    client = RecordingClient()
    second = ship_files([log_file], client, batch_size=5, state_dir=state_dir, options=ParseOptions(year=2026))
    [f] = second.files
    assert f.resumed_from_line == 40 and f.sent == 60
    sent_ids = {e.event_id for call in client.calls for e in call}
    all_ids = {e.event_id for e in read_file(log_file, options=ParseOptions(year=2026)).events}
    assert len(sent_ids) == 60 and sent_ids < all_ids

    # Finished: a third run sends nothing; a changed file starts over.
    assert ship_files([log_file], RecordingClient(), batch_size=5, state_dir=state_dir).files[0].sent == 0
    log_file.write_text("Feb 11 00:00:00 other sshd[1]: Accepted password for z from 10.9.9.9 port 1 ssh2\n")
    assert ship_files([log_file], RecordingClient(), batch_size=5, state_dir=state_dir).files[0].sent == 1


def test_state_follows_the_content_and_the_destination(log_file, tmp_path):
    state_dir = tmp_path / "state"
    ship = lambda path, destination: ship_files([path], RecordingClient(), batch_size=5, state_dir=state_dir,  # noqa: E731
                                                destination=destination, options=ParseOptions(year=2026)).files[0].sent
    assert ship(log_file, "ingest-a:50051") == 100
    copy = tmp_path / "elsewhere" / "renamed.log"
    copy.parent.mkdir()
    copy.write_bytes(log_file.read_bytes())
    assert ship(copy, "ingest-a:50051") == 0  # the same content, under another name: already shipped
    assert ship(log_file, "ingest-b:50051") == 100  # another server has none of it
    with log_file.open("a") as f:
        f.write(LINES[0].replace("06:00:00", "07:00:00") + "\n")
    assert ship(log_file, "ingest-a:50051") == 1  # grown: only the new line
    (state_dir / "x.json").write_text("{not json")
    broken = ShipState(state_dir, "ingest-a:50051", "x")
    assert broken.saved == {} and broken.rejected == {}


def test_rejected_lines_are_kept_reported_and_resent_on_request(log_file, tmp_path):
    state_dir = tmp_path / "state"
    kwargs = dict(batch_size=5, state_dir=state_dir, destination="d", options=ParseOptions(year=2026))
    first = ship_files([log_file], RecordingClient(reject_index=3), **kwargs)
    assert first.files[0].pending_rejected == 3 and exit_code(first) == 3
    assert "3 rejected lines not stored" in format_summary(first)
    again = ship_files([log_file], RecordingClient(), **kwargs)
    assert again.files[0].sent == 0 and again.files[0].pending_rejected == 3 and exit_code(again) == 3
    client = RecordingClient()
    fixed = ship_files([log_file], client, resend_rejected=True, **kwargs)
    [f] = fixed.files
    assert f.resent_lines == 3 and f.pending_rejected == 0 and exit_code(fixed) == 0
    assert [e.event_id for call in client.calls for e in call] == [
        e.event_id for c in RecordingClient.rejected_of(log_file) for e in c]


def test_gzip_files_ship_like_plain_ones_and_resume(log_file, tmp_path):
    gz = tmp_path / "auth.log.1.gz"
    gz.write_bytes(gzip.compress(log_file.read_bytes()))
    state_dir = tmp_path / "state"
    first = ship_files([gz], RecordingClient(interrupt_after_calls=1), batch_size=5, state_dir=state_dir,
                       options=ParseOptions(year=2026))
    assert first.interrupted and first.files[0].sent == 40
    client = RecordingClient()
    second = ship_files([gz], client, batch_size=5, state_dir=state_dir, options=ParseOptions(year=2026))
    assert second.files[0].resumed_from_line == 40 and second.files[0].sent == 60
    plain = [e.event_id for e in read_file(log_file, options=ParseOptions(year=2026)).events]
    assert [e.event_id for call in client.calls for e in call] == plain[40:]
    assert fingerprint(sources(gz)[0]) == fingerprint(sources(log_file)[0])  # the content, not its packing


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert main(["ship", str(tmp_path / "missing.log")]) == 2
    path = tmp_path / "a.log"
    path.write_text(LINES[0] + "\n")
    assert main(["ship", "--timezone", "Mars/Olympus", str(path)]) == 2
    assert "unknown time zone" in capsys.readouterr().err
    assert main(["ship", "--dry-run", "--year", "2026", str(path)]) == 0
    assert "read 1, parsed 1" in capsys.readouterr().out


def test_standard_input_is_read_with_a_dash(tmp_path, capsys, monkeypatch):
    raw = ("\n".join(LINES[:3]) + "\nnot syslog\n").encode()
    for data in (raw, gzip.compress(raw)):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert main(["ship", "-", "--dry-run", "--year", "2026", "--state-dir", str(tmp_path), "-o", "json"]) == 0
        body = json.loads(capsys.readouterr().out)
        assert body["files"][0]["file"] == "-" and body["total"]["events"] == 3 and body["total"]["unparseable"] == 1
    assert not list((tmp_path / "spool").iterdir())  # the spool file is gone


# -- against a running ingest ------------------------------------------------------


def _stored(pg, ids: set[str]) -> int:
    return pg.execute("SELECT count(*) FROM events WHERE event_id = ANY(%s)", (list(ids),)).fetchone()[0]


DATASET_FILES = (
    "loghub/OpenSSH_2k.log",
    "loghub/Linux_2k.log",
    "otrf/o365spray_default.zip",
    "otrf/o365spray_reporting.zip",
    "otrf/purplesharp_ad_playbook_I_host.zip",
    "azure-sentinel-training-lab/sign-in_adelete.csv",
)


@pytest.mark.e2e
@pytest.mark.datasets
def test_ship_datasets_to_running_ingest(datasets, ingest_service, agents_pg, tmp_path, capsys):
    files = [str(datasets / name) for name in DATASET_FILES]
    args = ["ship", "--address", ingest_service.address, "--state-dir", str(tmp_path / "state"), "--no-progress", "--batch-size", "200"]
    assert main([*args, *files]) == 0
    out = capsys.readouterr().out
    print(out)
    expected = {e.event_id for name in files for e in read_file(name).events}
    assert len(expected) == 1470 - 7  # 1470 parsed; the M365 reporting export repeats 7 records
    assert "sent 1470, accepted 1463, duplicates 7, rejected 0" in out
    assert _stored(agents_pg, expected) == len(expected)
    by_producer = dict(agents_pg.execute(
        "SELECT producer, count(*) FROM events WHERE event_id = ANY(%s) GROUP BY producer", (list(expected),)
    ).fetchall())
    assert by_producer == {"sshd": 534 + 561, "su": 86, "klogind": 23, "login": 2, "gdm": 1, "winevent": 184, "m365": 16, "entra": 56}
    # Failures that name no account (Linux PAM without user=, klogind, gdm) are stored for their
    # source with an empty user_name; no account is made of them, '' or 'unknown'.
    nameless = agents_pg.execute(
        "SELECT producer, count(*), count(*) FILTER (WHERE source_ip IS NOT NULL OR source_host IS NOT NULL)"
        " FROM events WHERE event_id = ANY(%s) AND user_name = '' GROUP BY producer", (list(expected),)
    ).fetchall()
    assert sorted(nameless) == [("gdm", 1, 1), ("klogind", 23, 23), ("sshd", 117, 117)]
    assert agents_pg.execute("SELECT count(*) FROM users WHERE user_name IN ('', 'unknown')").fetchone()[0] == 0
    # What the Windows parser keeps arrives in the store: the actor, Kerberos and share fields.
    stored = dict(agents_pg.execute(
        "SELECT action || ' ' || event_type, count(*) FROM events WHERE event_id = ANY(%s) AND producer = 'winevent'"
        " AND (attributes ? 'actor.user' OR attributes ? 'kerberos.service' OR attributes ? 'share.name') GROUP BY 1",
        (list(expected),),
    ).fetchall())
    assert stored == {"4625 logon": 7, "4688 process_start": 4, "4769 service_ticket": 17, "5140 share_access": 3, "5145 share_access": 3}

    # Again: the state says everything was acknowledged.
    assert main([*args, *files]) == 0
    assert "sent 0, accepted 0" in capsys.readouterr().out
    # From scratch: every event is already stored.
    assert main([*args, "--restart", files[0]]) == 0
    assert "sent 534, accepted 0, duplicates 534" in capsys.readouterr().out


@pytest.mark.e2e
@pytest.mark.datasets
def test_interrupted_shipping_resumes_without_loss_or_duplicates(datasets, ingest_service, agents_pg, tmp_path):
    from ueba.client.ingest import IngestClient

    path = datasets / "loghub" / "OpenSSH_2k.log"
    options = ParseOptions(year=2024)  # other event ids than the dataset test's 2025 copy
    expected = {e.event_id for e in read_file(path, options=options).events}
    acked = 0

    def ctrl_c_after_450(n: int) -> None:
        nonlocal acked
        acked += n
        if acked >= 450:
            raise KeyboardInterrupt

    with IngestClient(ingest_service.address, batch_size=50) as client:
        first = ship_files([path], client, options=options, batch_size=50, state_dir=tmp_path, progress=ctrl_c_after_450)
        assert first.interrupted
        stored_after_interrupt = _stored(agents_pg, expected)
        # Batches in flight when the run stopped may have been committed without being recorded.
        assert 450 <= stored_after_interrupt <= len(expected)
        second = ship_files([path], client, options=options, batch_size=50, state_dir=tmp_path)
    [f] = second.files
    assert f.resumed_from_line > 0 and f.sent == len(expected) - 400  # the first chunk of 8 x 50 was acknowledged
    assert f.accepted == len(expected) - stored_after_interrupt
    assert f.duplicates == stored_after_interrupt - 400  # the resent tail is recognised, not stored twice
    assert _stored(agents_pg, expected) == len(expected)


@pytest.mark.e2e
@pytest.mark.datasets
def test_openssh_brute_force_raises_failed_login_anomalies(datasets, server_url, tmp_path, capsys):
    """OpenSSH_2k.log through ingest into the profiles service's default failed-logins profile."""
    import re
    from collections import defaultdict
    from datetime import datetime

    path = datasets / "loghub" / "OpenSSH_2k.log"
    # Independently of the parser: sources with 10 failures within 10 minutes (brute force)
    # or 10 accounts within 10 minutes (spray), the default profile's thresholds.
    failed = re.compile(r"^(\w+ +\d+ [\d:]+) \S+ sshd\[\d+\]: (?:message repeated (\d+) times: \[ )?Failed \S+ for (?:invalid user )?(.*?) from (\S+) port")
    by_source: dict[str, list] = defaultdict(list)
    for line in path.read_text().splitlines():
        m = failed.match(line)
        if m:
            t = datetime.strptime("2025 " + m.group(1), "%Y %b %d %H:%M:%S")
            by_source[m.group(4)] += [(t, m.group(3).strip())] * int(m.group(2) or 1)
    spraying = {
        s for s, xs in by_source.items()
        if any(len({u for t, u in xs if 0 <= (t - t0).total_seconds() < 600}) >= 10 for t0, _ in xs)
    }
    heavy = {s for s, xs in by_source.items() if any(sum(1 for t, _ in xs if 0 <= (t - t0).total_seconds() < 600) >= 10 for t0, _ in xs)}
    assert spraying == {"183.62.140.253", "187.141.143.180", "103.99.0.122"}
    assert heavy == spraying | {"112.95.230.3", "185.190.58.151", "5.188.10.180"}

    with ingest_and_profiles(server_url, tmp_path) as (url, address, _):
        assert main(["ship", "--address", address, "--year", "2025", "--state-dir", str(tmp_path), "--no-progress", str(path)]) == 0
        capsys.readouterr()
        rows: list = []
        deadline = time.monotonic() + 60
        with psycopg.connect(libpq_url(url), autocommit=True) as pg:
            while time.monotonic() < deadline:
                rows = pg.execute(
                    "SELECT user_name, description, evidence FROM anomalies WHERE profile_kind = 'failed_logins' ORDER BY time"
                ).fetchall()
                sources = {s for _, _, ev in rows for s in ev.get("sources", []) + [ev.get("source_ip")] if s}
                if heavy <= sources and {"root", "admin"} <= {u for u, _, _ in rows}:
                    break
                time.sleep(0.5)
        print(f"\n{len(rows)} failed-login anomalies; brute-forcing sources {sorted(heavy)}")
        for user, description, _ in rows[:15]:
            print(f"  {user}: {description}")
        sources = {s for _, _, ev in rows for s in ev.get("sources", []) + [ev.get("source_ip")] if s}
        assert spraying <= heavy and heavy <= sources, (heavy, sources)
        assert {"root", "admin"} <= {u for u, _, _ in rows}  # the accounts brute-forced 10 times within 10 minutes
        assert sources <= set(by_source)  # every source named really failed to log on


@pytest.mark.e2e
@pytest.mark.datasets
def test_linux_failures_naming_no_account_raise_nothing_on_an_account(datasets, server_url, tmp_path, capsys):
    """Linux_2k.log through ingest, the profiles service and a scoring run: the 141 failures that name
    no account are stored for their source, and no account called '' or 'unknown' exists anywhere."""
    from datetime import datetime, timezone

    import grpc

    from services.scorer.runs import Scorer
    from services.scorer.settings import ScorerSettings
    from ueba.anomaly_log import AnomalySink
    from ueba.db import create_db_engine
    from ueba.v1 import common_pb2, profiles_pb2, profiles_pb2_grpc

    path = datasets / "loghub" / "Linux_2k.log"
    with ingest_and_profiles(server_url, tmp_path) as (url, address, profiles_address):
        assert main(["ship", "--address", address, "--year", "2025", "--state-dir", str(tmp_path), "--no-progress", str(path)]) == 0
        capsys.readouterr()
        with psycopg.connect(libpq_url(url), autocommit=True) as pg:
            caught_up = """SELECT count(*) > 0 AND bool_and(pg_visible_in_snapshot((SELECT max(txid) FROM events), snapshot::pg_snapshot))
                           FROM profile_cursors"""
            deadline = time.monotonic() + 60
            while not pg.execute(caught_up).fetchone()[0]:
                assert time.monotonic() < deadline, "the profiles service did not read every event"
                time.sleep(0.3)
            engine = create_db_engine(url, pool_size=2)
            try:
                settings = ScorerSettings.from_env({"DATABASE_URL": url, "UEBA_SCORING_SCHEDULE": "off"})
                run = Scorer(engine, settings, AnomalySink("off")).run(
                    "default", datetime(2025, 6, 1, tzinfo=timezone.utc), datetime(2025, 8, 1, tzinfo=timezone.utc))
                assert run.status == "succeeded", run
            finally:
                engine.dispose()
            assert pg.execute("SELECT count(*) FROM events WHERE user_name = ''").fetchone()[0] == 117 + 23 + 1
            # A dry run over the past reads the same rows as the running evaluator: the named logons only.
            with grpc.insecure_channel(profiles_address) as channel:
                span = common_pb2.TimeRange()
                span.start.FromDatetime(datetime(2025, 6, 1))
                span.end.FromDatetime(datetime(2025, 8, 1))
                preview = profiles_pb2_grpc.ProfileServiceStub(channel).PreviewProfile(profiles_pb2.PreviewProfileRequest(
                    profile=profiles_pb2.Profile(name="brute force", kind=profiles_pb2.PROFILE_KIND_FAILED_LOGINS, risk_score=60),
                    range=span))
            assert preview.events_examined == 550 - 141 and preview.total_anomalies > 0
            # Findings about an account name one; the others are about a source address or host.
            assert not {a.user for a in preview.anomalies if a.entity.type == common_pb2.ENTITY_TYPE_USER} & {"", "unknown"}
            assert all(a.entity.name and a.entity.name != "unknown" for a in preview.anomalies)
            accounts = {table: "user_name IN ('', 'unknown')" for table in (
                "users", "user_risk", "user_hour_features", "entity_seen", "event_scores", "user_scores")}
            # A finding about a source names no account (user_name ''): it is the source's.
            accounts["anomalies"] = "entity IN ('', 'unknown') OR (entity_type = 'user' AND user_name IN ('', 'unknown'))"
            named = {
                table: pg.execute(f"SELECT count(*) FILTER (WHERE {nameless}), count(*) FROM {table}").fetchone()
                for table, nameless in accounts.items()
            }
            print(f"\n(rows naming '' or 'unknown', all rows) per table: {named}")
            assert all(nameless == 0 for nameless, _ in named.values()), named
            # The services did run over the named accounts: rule and model findings, features, sightings.
            assert all(rows > 0 for table, (_, rows) in named.items() if table != "user_risk"), named


@pytest.mark.e2e
def test_rejected_lines_reach_a_server_that_takes_them(server_url, tmp_path, capsys, monkeypatch):
    """Too old for one ingest (UEBA_MAX_PAST_DAYS=30): exit 3 and the lines kept; another ingest
    takes the same file (from standard input, gzipped) whole; resending to the first still fails."""
    log = tmp_path / "old.log.gz"
    log.write_bytes(gzip.compress(("\n".join(LINES[:20]) + "\n").encode()))
    expected = {e.event_id for e in read_file(log, options=ParseOptions(year=2020)).events}
    name, url = fresh_database(server_url)
    strict = lenient = None
    try:
        strict = start_service("ingest", ingest_env(url, UEBA_MAX_PAST_DAYS="30"), log_path=tmp_path / "strict.log")
        lenient = start_service("ingest", ingest_env(url), log_path=tmp_path / "lenient.log")
        args = ["ship", "--year", "2020", "--state-dir", str(tmp_path / "state"), "--no-progress"]
        assert main([*args, "--address", strict.address, str(log)]) == 3
        out = capsys.readouterr().out
        assert "rejected 20" in out and "20 rejected lines not stored" in out and "--resend-rejected" in out
        assert main([*args, "--address", strict.address, str(log)]) == 3  # still not stored, still said
        assert "sent 0" in capsys.readouterr().out
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(log.read_bytes())))
        assert main([*args, "--address", lenient.address, "-"]) == 0
        assert "sent 20, accepted 20, duplicates 0, rejected 0" in capsys.readouterr().out
        assert main([*args, "--address", strict.address, "--resend-rejected", str(log)]) == 3
        assert "20 rejected lines of earlier runs sent again" in capsys.readouterr().out
        with psycopg.connect(libpq_url(url), autocommit=True) as pg:
            assert _stored(pg, expected) == 20
    finally:
        for service in (strict, lenient):
            if service is not None:
                service.stop()
        drop_database(server_url, name)
