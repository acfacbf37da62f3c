"""Ground truth: one Label per injected scenario (per targeted account for password sprays).

Attack kinds are what a detector should find; benign kinds are look-alikes (a return from leave, a
new laptop, ...) labelled so that an evaluation counts their user-days as clean but hard."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

# New kinds are appended: a kind's position seeds its random stream, so older kinds stay as they were.
ATTACK_KINDS: tuple[str, ...] = (
    "brute_force", "password_spray", "impossible_travel", "offhours_new_host", "lateral_movement",
    "bulk_download", "mass_deletion", "upload_new_app", "shared_credentials", "risky_country",
    "slow_password_spray", "ticket_lateral_movement", "share_enumeration",
)
BENIGN_KINDS: tuple[str, ...] = ("return_from_leave", "vpn_traveller", "on_call_night", "new_laptop")
LABEL_KINDS: tuple[str, ...] = ATTACK_KINDS + BENIGN_KINDS


@dataclass(frozen=True)
class Label:
    kind: str
    user: str
    start: datetime  # time of the first anomalous event
    end: datetime    # time of the last anomalous event (inclusive)
    description: str
    source: str = ""  # attacker's address where there is one
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def benign(self) -> bool:
        return self.kind in BENIGN_KINDS

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "user": self.user, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "description": self.description, "source": self.source, "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Label":
        return cls(data["kind"], data["user"], datetime.fromisoformat(data["start"]),
                   datetime.fromisoformat(data["end"]), data["description"], data.get("source", ""),
                   dict(data.get("details", {})))


def write_labels(path: str | Path, labels: Iterable[Label]) -> None:
    Path(path).write_text(json.dumps([label.to_dict() for label in labels], indent=2) + "\n")


def read_labels(path: str | Path) -> list[Label]:
    return [Label.from_dict(d) for d in json.loads(Path(path).read_text())]
