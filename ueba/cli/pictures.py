"""Small terminal pictures: sparklines of daily scores, a heat-map row of hourly scores."""

from __future__ import annotations

import os
from typing import Sequence, TextIO

BARS = "▁▂▃▄▅▆▇█"
SHADES = " ░▒▓█"
_RED, _RESET = "\x1b[31m", "\x1b[0m"


def sparkline(values: Sequence[float], top: float = 100.0) -> str:
    """One character per value on a fixed 0-`top` scale, so two users' lines compare; 0 is the lowest bar."""
    out = []
    for v in values:
        share = min(max(v, 0.0), top) / top
        out.append(BARS[0] if v <= 0 else BARS[min(len(BARS) - 1, 1 + int(share * (len(BARS) - 1)))])
    return "".join(out)


def colour_allowed(out: TextIO) -> bool:
    """Colour only on a terminal that shows it, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM", "") in ("", "dumb"):
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def heat_row(scores: Sequence[float], threshold: float, out: TextIO, top: float = 100.0) -> str:
    """A cell per hour shaded by its score; at or above `threshold` in red where colour is allowed."""
    colour = colour_allowed(out)
    cells = []
    for v in scores:
        shade = SHADES[0] if v <= 0 else SHADES[min(len(SHADES) - 1, 1 + int(min(v, top) / top * (len(SHADES) - 1)))]
        cells.append(f"{_RED}{shade}{_RESET}" if colour and threshold and v >= threshold else shade)
    return "".join(cells)
