"""Constructed activity for scorer tests, written straight into `events` (and `users`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg

from ueba.db import libpq_url
from ueba.store.partitions import ensure_partitions

START = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday
_ids = itertools.count(1)

COLUMNS = ("tenant", "event_id", "time", "user_name", "event_type", "outcome", "source_ip", "source_host",
           "destination_host", "application", "country", "city", "latitude", "longitude", "bytes", "file_count",
           "department")

CITIES = {
    "london": ("GB", "London", 51.507, -0.128),
    "leeds": ("GB", "Leeds", 53.8, -1.55),
    "moscow": ("RU", "Moscow", 55.75, 37.62),
    "sydney": ("AU", "Sydney", -33.87, 151.21),
}


@dataclass
class Activity:
    tenant: str = "default"
    rows: list[tuple] = field(default_factory=list)
    departments: dict[str, str | None] = field(default_factory=dict)

    def event(self, user: str, time: datetime, event_type: str = "logon", outcome: str = "success",
              source_ip: str | None = "10.0.0.1", source_host: str | None = None, destination_host: str | None = None,
              application: str | None = None, city: str | None = "london", bytes: int = 0, file_count: int = 0) -> None:
        geo = CITIES[city] if city else (None, None, None, None)
        self.departments.setdefault(user, None)
        self.rows.append((self.tenant, f"t{next(_ids)}", time, user, event_type, outcome, source_ip, source_host,
                          destination_host, application, *geo, bytes, file_count, self.departments.get(user)))

    def workday(self, user: str, day: datetime, hours=range(9, 17), hosts=("fs1", "mail")) -> None:
        """An ordinary office day: a logon, host access and a few downloads each hour."""
        for h in hours:
            t = day + timedelta(hours=h, minutes=5)
            self.event(user, t, "logon", source_host=f"{user}-pc", destination_host="dc1")
            for i, host in enumerate(hosts):
                self.event(user, t + timedelta(minutes=10 + i), "host_access", source_host=f"{user}-pc", destination_host=host)
            self.event(user, t + timedelta(minutes=30), "file_download", application="sharepoint",
                       bytes=2_000_000, file_count=2)

    def office_month(self, user: str, days: int, start: datetime = START, department: str | None = None) -> None:
        self.departments[user] = department
        for d in range(days):
            day = start + timedelta(days=d)
            if day.weekday() < 5:
                self.workday(user, day)

    def write(self, database_url: str, users_table: bool = True) -> None:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            ensure_partitions(conn, {r[2].date() for r in self.rows})
            with conn.transaction():
                with conn.cursor() as cur, cur.copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for r in self.rows:
                        copy.write_row(r)
                if users_table:
                    by_user: dict[str, list[datetime]] = {}
                    for r in self.rows:
                        by_user.setdefault(r[3], []).append(r[2])
                    for user, times in by_user.items():
                        conn.execute(
                            """INSERT INTO users (tenant, user_name, department, first_seen, last_seen)
                               VALUES (%s, %s, %s, %s, %s)
                               ON CONFLICT (tenant, user_name) DO UPDATE SET
                                 first_seen = LEAST(users.first_seen, excluded.first_seen),
                                 last_seen = GREATEST(users.last_seen, excluded.last_seen),
                                 department = excluded.department""",
                            (self.tenant, user, self.departments.get(user), min(times), max(times)),
                        )
        self.rows.clear()
