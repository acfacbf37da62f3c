"""A run's window: whole UTC hours, the UTC days they fall on, and the default last 24 hours."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def floor_hour(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def floor_day(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def window_days(start: datetime, end: datetime) -> list[date]:
    """The UTC days the hours from `start` to `end` fall on."""
    days = []
    day = floor_day(start)
    while day < end:
        days.append(day.date())
        day += DAY
    return days


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """From the first window day's midnight to the midnight after its last hour."""
    if end <= start:
        return start, start
    return floor_day(start), floor_day(end - HOUR) + DAY


def whole_days_past_retention(start: datetime, end: datetime, retention_days: int,
                              today: date) -> tuple[datetime, datetime]:
    """The window widened to whole UTC days where it touches a day whose event scores
    retention may have dropped (0: none).

    A run computes each day's user score from all the day's stored event scores;
    scoring part of a day whose other hours are gone would replace its score (and
    withdraw its anomaly) with one of that part alone. A day of margin: the
    retention worker's clock may already be on the next day.
    """
    if not retention_days:
        return start, end
    kept = day_start(today) - (retention_days - 1) * DAY
    if start < kept:
        start = floor_day(start)
    last_day = floor_day(end - HOUR)
    if last_day < kept:
        end = last_day + DAY
    return start, end


def default_window(now: datetime) -> tuple[datetime, datetime]:
    """The last 24 complete hours."""
    end = floor_hour(now)
    return end - 24 * HOUR, end


def requested_window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The whole hours a RunScoring asks for: an end alone scores the 24 hours before it, a start
    alone the hours from it to now (at least one), neither the last 24 complete hours."""
    if start is None and end is None:
        return default_window(now)
    if end is not None:
        end = floor_hour(end)
    if start is None:
        return end - 24 * HOUR, end
    start = floor_hour(start)
    return start, end if end is not None else max(floor_hour(now), start + HOUR)
