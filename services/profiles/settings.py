"""Settings of the profiles service."""

from __future__ import annotations

from dataclasses import dataclass

from ueba.leases import LeaseSettings
from ueba.settings import SettingsError, env_field


@dataclass(frozen=True)
class ProfilesSettings(LeaseSettings):
    poll_seconds: float = env_field("UEBA_PROFILES_POLL_SECONDS", 0.5, "how often the evaluator looks for new events when no commit is announced")
    batch_events: int = env_field("UEBA_PROFILES_BATCH_EVENTS", 5000, "most events the evaluator takes in one transaction")
    start_from: str = env_field(
        "UEBA_PROFILES_START", "beginning", "where a new evaluator starts: beginning (every stored event) or now"
    )
    evaluate: bool = env_field("UEBA_PROFILES_EVALUATE", True, "run the continuous evaluator in this process")
    seed_defaults: bool = env_field("UEBA_PROFILES_SEED_DEFAULTS", True, "create the built-in profiles for a new tenant")
    preview_max_days: int = env_field("UEBA_PROFILES_PREVIEW_MAX_DAYS", 90, "longest range PreviewProfile accepts")

    def validate(self) -> None:
        super().validate()
        if not 0.05 <= self.poll_seconds <= 60:
            raise SettingsError(f"UEBA_PROFILES_POLL_SECONDS={self.poll_seconds}: expected 0.05 to 60")
        if not 1 <= self.batch_events <= 1_000_000:
            raise SettingsError(f"UEBA_PROFILES_BATCH_EVENTS={self.batch_events}: expected 1 to 1000000")
        if self.start_from not in ("beginning", "now"):
            raise SettingsError(f"UEBA_PROFILES_START={self.start_from!r}: expected beginning or now")
        if not 1 <= self.preview_max_days <= 3650:
            raise SettingsError(f"UEBA_PROFILES_PREVIEW_MAX_DAYS={self.preview_max_days}: expected 1 to 3650")
