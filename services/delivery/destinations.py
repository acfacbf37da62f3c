"""Configured destinations: what each one receives (its filter), when (quiet hours, rate limit)
and how it retries. The configuration format is in the README."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ueba.findings import KINDS
from ueba.risk import LEVELS, risk_level
from ueba.syslog import FACILITIES, FRAMINGS, SyslogTransport
from ueba.settings import SettingsError

TYPES = ("webhook", "syslog", "log")
FORMATS = ("json", "cef")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_KEYS = {
    "common": {"name", "type", "min_risk", "kinds", "tenants", "notify_levels", "quiet_hours", "quiet_timezone",
               "quiet_kinds", "quiet_min_risk", "rate_limit", "rate_period_seconds", "max_attempts",
               "backoff_seconds", "max_backoff_seconds"},
    "webhook": {"url", "secret_env", "authorization_env", "timeout_seconds", "ca_file", "headers"},
    "syslog": {"address", "format", "framing", "facility", "app_name", "ca_file", "timeout_seconds"},
    "log": {"target"},
}


@dataclass(frozen=True)
class QuietHours:
    """A daily window in a time zone during which some notifications wait; may span midnight."""

    start: time
    end: time
    zone: ZoneInfo

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(self.zone).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class Destination:
    name: str
    type: str
    options: dict[str, Any]
    min_risk: int = 0
    kinds: frozenset[str] = frozenset(KINDS)
    tenants: frozenset[str] = frozenset()  # empty: every tenant
    notify_levels: frozenset[str] = frozenset({"high", "critical"})  # risk crossings into these levels
    quiet: QuietHours | None = None
    quiet_kinds: frozenset[str] = frozenset({"risk"})
    quiet_min_risk: int = 90  # at least this still goes out in quiet hours
    rate_limit: int = 0  # deliveries per rate period; 0: no limit
    rate_period_seconds: float = 60.0
    max_attempts: int = 20
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 600.0
    secret: bytes = field(default=b"", repr=False)
    authorization: str = field(default="", repr=False)  # a receiver's own credential (Splunk HEC's token)

    def wants(self, tenant: str, kind: str, risk_score: int) -> bool:
        """Whether an outbox row goes to this destination at all."""
        if self.tenants and tenant not in self.tenants:
            return False
        if kind not in self.kinds or risk_score < self.min_risk:
            return False
        return kind != "risk" or risk_level(risk_score) in self.notify_levels

    def held_back(self, at: datetime) -> tuple[frozenset[str], int] | None:
        """In quiet hours: (the kinds that wait, the risk from which they still go); else None."""
        if self.quiet is None or not self.quiet.contains(at):
            return None
        return self.quiet_kinds, self.quiet_min_risk


def _strings(name: str, key: str, value: Any, allowed: tuple[str, ...] | None = None) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"destination {name!r}: {key} must be a list of strings")
    if allowed is not None:
        wrong = [v for v in value if v not in allowed]
        if wrong:
            raise SettingsError(f"destination {name!r}: {key} {wrong[0]!r} is not one of {', '.join(allowed)}")
    return frozenset(value)


def _number(name: str, key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise SettingsError(f"destination {name!r}: {key} must be a number from {low:g} to {high:g}")
    return value


def _quiet(name: str, raw: dict[str, Any]) -> QuietHours | None:
    hours = raw.get("quiet_hours")
    if not hours:
        return None
    m = _HOURS.match(str(hours))
    if not m:
        raise SettingsError(f"destination {name!r}: quiet_hours {hours!r} is not HH:MM-HH:MM")
    try:
        zone = ZoneInfo(str(raw.get("quiet_timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"destination {name!r}: quiet_timezone {raw.get('quiet_timezone')!r} is not a time zone") from None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    return QuietHours(time(h1, m1), time(h2, m2), zone)


def _check_options(name: str, kind: str, raw: dict[str, Any], environ: dict[str, str]) -> bytes:
    """Validates the type's own options; the webhook's signing secret."""
    if kind == "webhook":
        url = raw.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise SettingsError(f"destination {name!r}: url must be an http:// or https:// URL")
        secret_env = raw.get("secret_env", "")
        secret = environ.get(secret_env, "") if secret_env else ""
        if not secret:
            raise SettingsError(f"destination {name!r}: secret_env must name a set environment variable holding "
                                "the HMAC key (receivers check every request with it)")
        authorization_env = raw.get("authorization_env", "")
        if authorization_env and not environ.get(authorization_env):
            raise SettingsError(f"destination {name!r}: authorization_env {authorization_env!r} is not set")
        if any(str(k).lower() == "authorization" for k in raw.get("headers", {})):
            raise SettingsError(f"destination {name!r}: put credentials in authorization_env, not in headers "
                                "(the configuration is not a secret)")
        return secret.encode()
    if kind == "syslog":
        try:
            SyslogTransport(str(raw.get("address", "")), str(raw.get("framing", "octet-counting")))
        except ValueError as exc:
            raise SettingsError(f"destination {name!r}: {exc}") from None
        if raw.get("format", "json") not in FORMATS:
            raise SettingsError(f"destination {name!r}: format must be one of {', '.join(FORMATS)}")
        if raw.get("facility", "local0") not in FACILITIES:
            raise SettingsError(f"destination {name!r}: facility must be one of {', '.join(FACILITIES)}")
    return b""


def parse_destination(raw: Any, environ: dict[str, str]) -> Destination:
    if not isinstance(raw, dict):
        raise SettingsError("every destination must be a JSON object")
    name, kind = raw.get("name"), raw.get("type")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SettingsError(f"destination name {name!r}: 1-63 of a-z, 0-9, '_', '.', '-'")
    if kind not in TYPES:
        raise SettingsError(f"destination {name!r}: type must be one of {', '.join(TYPES)}")
    unknown = set(raw) - _KEYS["common"] - _KEYS[kind]
    if unknown:
        raise SettingsError(f"destination {name!r}: unknown key {sorted(unknown)[0]!r} for type {kind}")
    secret = _check_options(name, kind, raw, environ)
    options = {k: v for k, v in raw.items() if k in _KEYS[kind]}
    authorization = environ.get(raw.get("authorization_env", ""), "") if kind == "webhook" else ""
    d = Destination(name=name, type=kind, options=options, secret=secret, authorization=authorization,
                    quiet=_quiet(name, raw))
    values: dict[str, Any] = {}
    if "kinds" in raw:
        values["kinds"] = _strings(name, "kinds", raw["kinds"], KINDS)
    if "tenants" in raw:
        values["tenants"] = _strings(name, "tenants", raw["tenants"])
    if "notify_levels" in raw:
        values["notify_levels"] = _strings(name, "notify_levels", raw["notify_levels"], LEVELS)
    if "quiet_kinds" in raw:
        values["quiet_kinds"] = _strings(name, "quiet_kinds", raw["quiet_kinds"], KINDS)
    for key, low, high, cast in (("min_risk", 0, 100, int), ("quiet_min_risk", 0, 101, int), ("rate_limit", 0, 1e6, int),
                                 ("rate_period_seconds", 1, 86400, float), ("max_attempts", 1, 1000, int),
                                 ("backoff_seconds", 0.01, 3600, float), ("max_backoff_seconds", 0.01, 86400, float)):
        if key in raw:
            values[key] = cast(_number(name, key, raw[key], low, high))
    return replace(d, **values)


def load_destinations(text: str, file_path: str, anomaly_log: str, environ: dict[str, str] | None = None) -> list[Destination]:
    """The destinations of UEBA_DELIVERY_DESTINATIONS (JSON), of the file it may name instead,
    and the anomaly.log of UEBA_ANOMALY_LOG (every finding, no filter)."""
    environ = dict(os.environ) if environ is None else environ
    if text and file_path:
        raise SettingsError("UEBA_DELIVERY_DESTINATIONS and UEBA_DELIVERY_DESTINATIONS_FILE: set one, not both")
    var = "UEBA_DELIVERY_DESTINATIONS"
    if file_path:
        var = "UEBA_DELIVERY_DESTINATIONS_FILE"
        try:
            with open(file_path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise SettingsError(f"{var}={file_path!r}: {exc.strerror or exc}") from None
    try:
        items = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{var}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(items, list):
        raise SettingsError(f"{var}: expected a JSON array of destinations")
    try:
        found = [parse_destination(item, environ) for item in items]
    except SettingsError as exc:
        raise SettingsError(f"{var}: {exc}") from None
    if anomaly_log.strip().lower() != "off":  # empty: stdout, as the scorer's
        found.append(Destination(name="anomaly-log", type="log", options={"target": anomaly_log}))
    names = [d.name for d in found]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise SettingsError(f"{var}: destination name {duplicate!r} is used twice")
    return found
