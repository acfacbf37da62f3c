"""The run record: a `scoring_runs` row from `running` to `succeeded` or `failed`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from ueba.store.schema import scoring_runs

INTERRUPTED = "interrupted: the scorer stopped during the run"


def start_run(conn: Connection, tenant: str, trigger: str, start: datetime, end: datetime, marker: dict) -> str:
    return conn.execute(
        insert(scoring_runs)
        .values(tenant=tenant, status="running", trigger=trigger, range_start=start, range_end=end, figures=marker)
        .returning(scoring_runs.c.id)
    ).scalar_one()


def finish_run(conn: Connection, run_id: str, figures: dict) -> None:
    conn.execute(update(scoring_runs).where(scoring_runs.c.id == run_id)
                 .values(status="succeeded", finished_at=func.clock_timestamp(), figures=figures))


def fail_run(conn: Connection, run_id: str, error: str, only_running: bool = False) -> int:
    where = [scoring_runs.c.id == run_id] + ([scoring_runs.c.status == "running"] if only_running else [])
    return conn.execute(update(scoring_runs).where(*where)
                        .values(status="failed", finished_at=func.now(), error=error)).rowcount


def running_runs(conn: Connection) -> list[str]:
    return list(conn.execute(select(scoring_runs.c.id).where(scoring_runs.c.status == "running")).scalars())
