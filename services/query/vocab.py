"""The stored vocabularies the query service filters on."""

from __future__ import annotations

from ueba.messages import STATUS_ENUM
from ueba.risk import LEVELS, level_floor

# The scorer's models and dimensions (services/scorer/models.py; tests/query/test_vocab.py keeps them in step)
# and the rule profiles' dimensions.
DIMENSIONS = ("authentication", "data", "location", "host", "application", "time", "peer", "combined")
MODELS = ("authentication", "impacted_host", "login_time", "origin_host", "origin_location", "data_movement", "peer_group",
          "corroboration")
STATUSES = tuple(STATUS_ENUM)
SUPPRESSED = "suppressed"
REVIEWED = ("acknowledged", "resolved", "false_positive")

# Words the query string accepts for status; None means any status.
STATUS_WORDS: dict[str, tuple[str, ...] | None] = {
    "new": ("new",),
    "open": ("new",),
    "acknowledged": ("acknowledged",),
    "ack": ("acknowledged",),
    "resolved": ("resolved",),
    "false_positive": ("false_positive",),
    "fp": ("false_positive",),
    "reviewed": REVIEWED,
    "suppressed": ("suppressed",),
    "all": None,
    "any": None,
}



def level_band(level: str) -> tuple[int, int]:
    """(lowest, highest) score of a risk level, from ueba.risk's bands."""
    index = LEVELS.index(level)
    high = level_floor(LEVELS[index + 1]) - 1 if index + 1 < len(LEVELS) else 100
    return level_floor(level), high

