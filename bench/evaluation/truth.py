"""Ground truth from the simulator's labels, as user-days: used only to grade, never to score."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta, timezone

from ueba.simulator import Label

UserDay = tuple[str, date]
SPRAYS = frozenset({"password_spray", "slow_password_spray"})


def label_days(label: Label) -> list[UserDay]:
    """The UTC days a label's events fall on."""
    first, last = label.start.astimezone(timezone.utc).date(), label.end.astimezone(timezone.utc).date()
    return [(label.user, first + timedelta(days=i)) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class Truth:
    attacks: list[Label]
    attack_days: dict[UserDay, set[int]]  # user-day -> indexes into attacks
    lookalike_days: dict[UserDay, set[str]]  # user-day -> benign kinds on it

    @classmethod
    def from_labels(cls, labels: list[Label]) -> "Truth":
        attacks = [label for label in labels if not label.benign]
        attack_days: dict[UserDay, set[int]] = defaultdict(set)
        for i, label in enumerate(attacks):
            for key in label_days(label):
                attack_days[key].add(i)
        lookalikes: dict[UserDay, set[str]] = defaultdict(set)
        for label in labels:
            if label.benign:
                for key in label_days(label):
                    if key not in attack_days:
                        lookalikes[key].add(label.kind)
        return cls(attacks, dict(attack_days), dict(lookalikes))

    @property
    def attacked_users(self) -> set[str]:
        """Users an attack reached: a spray's failed attempts are the source's doing, not the account's,
        so a sprayed account counts only where the spray's password worked."""
        return {label.user for label in self.attacks
                if label.kind not in SPRAYS or label.details.get("succeeded")}

    def is_attack(self, key: UserDay) -> bool:
        return key in self.attack_days

    def days_of(self, attack: int) -> list[UserDay]:
        return label_days(self.attacks[attack])
