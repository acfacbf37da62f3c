"""Settings of the query service."""

from __future__ import annotations

from dataclasses import dataclass

from ueba.settings import BaseSettings, SettingsError, env_field


@dataclass(frozen=True)
class QuerySettings(BaseSettings):
    max_page_size: int = env_field("UEBA_QUERY_MAX_PAGE_SIZE", 1000, "largest page a list call returns")
    count_limit: int = env_field("UEBA_QUERY_COUNT_LIMIT", 1000, "ListAnomalies counts matching rows up to this many")
    maintenance_seconds: float = env_field(
        "UEBA_QUERY_MAINTENANCE_SECONDS", 2.0, "how often the pre-aggregates are merged and user risk refreshed"
    )
    maintenance: bool = env_field(
        "UEBA_QUERY_MAINTENANCE", True, "run the background merge and risk refresh in this process (one worker does)"
    )
    workers: int = env_field(
        "UEBA_QUERY_WORKERS", 1, "server processes sharing the port (SO_REUSEPORT); more than 1 uses more cores"
    )
    threads: int = env_field("UEBA_QUERY_THREADS", 16, "gRPC worker threads per process")
    summary_cache_entries: int = env_field(
        "UEBA_QUERY_SUMMARY_CACHE", 256, "GetSummary rollup totals kept per process (0 turns the cache off)"
    )
    count_cache_entries: int = env_field(
        "UEBA_QUERY_COUNT_CACHE", 1024, "ListAnomalies capped counts kept per process (0 turns the cache off)"
    )
    read_database_url: str = env_field(
        "UEBA_QUERY_READ_DATABASE_URL", "", "Postgres URL of a streaming replica for reads; empty: read from DATABASE_URL"
    )
    replica_max_lag_seconds: float = env_field(
        "UEBA_QUERY_REPLICA_MAX_LAG_SECONDS", 30.0, "read from the primary while the replica lags more than this; 0: no limit"
    )
    replica_sample_seconds: float = env_field(
        "UEBA_QUERY_REPLICA_SAMPLE_SECONDS", 0.5, "how often the replica's replay position (and lag) is sampled"
    )

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.max_page_size <= 10000:
            raise SettingsError(f"UEBA_QUERY_MAX_PAGE_SIZE={self.max_page_size}: expected 1 to 10000")
        if self.count_limit < 1:
            raise SettingsError(f"UEBA_QUERY_COUNT_LIMIT={self.count_limit}: at least 1")
        if self.maintenance_seconds <= 0:
            raise SettingsError(f"UEBA_QUERY_MAINTENANCE_SECONDS={self.maintenance_seconds}: must be positive")
        if not 1 <= self.workers <= 64:
            raise SettingsError(f"UEBA_QUERY_WORKERS={self.workers}: expected 1 to 64")
        if not 1 <= self.threads <= 512:
            raise SettingsError(f"UEBA_QUERY_THREADS={self.threads}: expected 1 to 512")
        if not 0 <= self.summary_cache_entries <= 100_000:
            raise SettingsError(f"UEBA_QUERY_SUMMARY_CACHE={self.summary_cache_entries}: expected 0 to 100000")
        if not 0 <= self.count_cache_entries <= 100_000:
            raise SettingsError(f"UEBA_QUERY_COUNT_CACHE={self.count_cache_entries}: expected 0 to 100000")
        if self.read_database_url:
            if not self.read_database_url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
                raise SettingsError("UEBA_QUERY_READ_DATABASE_URL: expected a postgresql:// URL")
            if not self.database_url:
                raise SettingsError("UEBA_QUERY_READ_DATABASE_URL: needs DATABASE_URL (the primary); the embedded server has no replica")
        if self.replica_max_lag_seconds < 0:
            raise SettingsError(f"UEBA_QUERY_REPLICA_MAX_LAG_SECONDS={self.replica_max_lag_seconds}: must not be negative")
        if not 0.05 <= self.replica_sample_seconds <= 60:
            raise SettingsError(f"UEBA_QUERY_REPLICA_SAMPLE_SECONDS={self.replica_sample_seconds}: expected 0.05 to 60")
