"""The built-in profiles every tenant starts with (seeded once per tenant).

Parameters are tuned on the simulator: a clean organisation raises few anomalies
while its labelled attacks fire (tests/profiles/test_simulated.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEED_VERSION = 1


@dataclass(frozen=True)
class DefaultProfile:
    name: str
    kind: str
    risk_score: int
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    dimension: str = ""
    enabled: bool = True


DEFAULT_PROFILES: tuple[DefaultProfile, ...] = (
    DefaultProfile(
        "Failed logins", "failed_logins", 50,
        "Many failed logons from one source (brute force), or on more accounts than the organisation's sources "
        "usually fail on, in minutes or over a day (password spray, credential stuffing); a success right after "
        "them is raised higher.",
        {"count": 10, "interval_seconds": 900, "spray_users": 5, "spray_quantile": 0.995, "spray_baseline_days": 30,
         "spray_interval_seconds": 86400, "success_risk_score": 80},
        "authentication",
    ),
    DefaultProfile(
        "Bulk download", "bulk_download", 40, "Many files or bytes downloaded within an hour.",
        {"file_count": 200, "bytes": 5 * 1024**3, "interval_seconds": 3600}, "data",
    ),
    DefaultProfile(
        "Bulk upload", "bulk_upload", 40, "Many files or bytes uploaded within an hour.",
        {"file_count": 200, "bytes": 5 * 1024**3, "interval_seconds": 3600}, "data",
    ),
    DefaultProfile(
        "Bulk delete", "bulk_delete", 60, "Many files deleted within an hour (destruction or ransomware).",
        {"file_count": 100, "bytes": 0, "interval_seconds": 3600}, "data",
    ),
    DefaultProfile(
        "Risky countries", "risky_countries", 60, "Activity from a country on the risky list.",
        {"countries": ["BY", "CU", "IR", "KP", "RU", "SY"], "interval_seconds": 86400}, "location",
    ),
    DefaultProfile(
        "Impossible travel", "proximity", 70,
        "Two located events of an account further apart, beyond their geolocation's uncertainty, than a "
        "plausible journey in the time between them; switching between the account's own networks is not travel.",
        {"max_speed_kmh": 900, "speed_multiplier": 1.0, "city_radius_km": 50, "coarse_radius_km": 500,
         "familiar_after_hours": 8, "trusted_networks": [], "suppress_seconds": 21600},
        "location",
    ),
    DefaultProfile(
        "Rare event", "rare_event", 25,
        "An application, country, host, or workstation logged on from, that this user (and the department) "
        "has not used in the last 30 days.",
        {"entity_types": ["application", "country", "host", "source_host"], "lookback_days": 30, "min_history_days": 7},
    ),
    DefaultProfile(
        "Shared credentials", "shared_credentials", 60,
        "One account active from two distant places in turn within an hour.",
        {"interval_seconds": 3600, "min_distance_km": 500, "max_addresses": 0}, "authentication",
    ),
    DefaultProfile(
        "Data exfiltration", "data_exfiltration", 70,
        "Uploads to an application the user and the department never used, weighed by volume and by how rare "
        "the application is in the organisation; or upload volume far above the usual.",
        {"min_bytes": 100 * 1024**2, "novel_min_bytes": 1024**2, "interval_seconds": 86400, "baseline_days": 30, "multiplier": 10,
         "novelty_scope": "peers", "min_history_days": 7},
        "data",
    ),
    DefaultProfile(
        "Privilege use burst", "custom_threshold", 40,
        "An example custom threshold: many uses of privileges by one account within an hour.",
        {"filter": {"event_type": "privilege_use"}, "aggregate": "count", "threshold": 50,
         "interval_seconds": 3600, "group_by": "user"},
        "host",
    ),
)
