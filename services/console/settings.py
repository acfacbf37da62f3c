"""Settings of the console."""

from __future__ import annotations

from dataclasses import dataclass

from ueba.settings import BaseSettings, SettingsError, env_field


@dataclass(frozen=True)
class ConsoleSettings(BaseSettings):
    listen: str = env_field("UEBA_LISTEN", "127.0.0.1:8080", "host:port of the console's HTTP server")
    query_address: str = env_field("UEBA_CONSOLE_QUERY_ADDRESS", "127.0.0.1:50054", "host:port of the query service")
    profiles_address: str = env_field("UEBA_CONSOLE_PROFILES_ADDRESS", "127.0.0.1:50052", "host:port of the profiles service")
    scorer_address: str = env_field("UEBA_CONSOLE_SCORER_ADDRESS", "127.0.0.1:50053", "host:port of the scorer service")
    call_timeout_seconds: float = env_field("UEBA_CONSOLE_CALL_TIMEOUT_SECONDS", 30.0, "deadline of each gRPC call made for a request")
    cors_origins: tuple[str, ...] = env_field(
        "UEBA_CONSOLE_CORS_ORIGINS", (), "comma-separated origins allowed to call the API from a browser; empty: CORS off"
    )

    def validate(self) -> None:
        super().validate()
        for var, address in (("UEBA_CONSOLE_QUERY_ADDRESS", self.query_address),
                             ("UEBA_CONSOLE_PROFILES_ADDRESS", self.profiles_address),
                             ("UEBA_CONSOLE_SCORER_ADDRESS", self.scorer_address)):
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise SettingsError(f"{var}={address!r}: expected host:port")
        if not 0 < self.call_timeout_seconds <= 600:
            raise SettingsError(f"UEBA_CONSOLE_CALL_TIMEOUT_SECONDS={self.call_timeout_seconds}: expected above 0, at most 600")
        for origin in self.cors_origins:
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise SettingsError(f"UEBA_CONSOLE_CORS_ORIGINS: {origin!r} is not an http(s) origin (a wildcard is refused)")
