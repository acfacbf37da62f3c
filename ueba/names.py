"""Account names: the one canonical form every service stores and compares.

Agents spell one account many ways (`CORP\\Alice`, `alice@corp.com`, `Alice`).
UEBA_USER_NAME_MODE (a shared setting) chooses the stored form; ingest
writes it and every service canonicalises what a caller types the same way,
so `user:alice@corp` finds what ingest stored in any mode.
"""

from __future__ import annotations

from typing import Callable

USER_NAME_MODES = ("strip_domain", "qualified", "exact")
DEFAULT_MODE = "strip_domain"

# Caches are cleared when they reach this size: simpler than LRU bookkeeping,
# and a real stream's working set of names is far smaller.
_CACHE_LIMIT = 200_000


def _strip_domain(raw: str) -> str:
    name = raw.strip()
    if "\\" in name:
        name = name.rpartition("\\")[2]
    if "@" in name:
        name = name.partition("@")[0]
    return name.strip().lower()


def _qualified(raw: str) -> str:
    # Keeps the domain so that alice@corp and alice@partner stay apart.
    name = raw.strip()
    if "\\" in name:
        domain, _, user = name.rpartition("\\")
        user, domain = user.strip(), domain.strip()
        name = f"{user}@{domain}" if domain and user else user
    return name.lower()


def _exact(raw: str) -> str:
    return raw.strip()


_FORMS: dict[str, Callable[[str], str]] = {"strip_domain": _strip_domain, "qualified": _qualified, "exact": _exact}


def canonical_user(raw: str | None, mode: str = DEFAULT_MODE) -> str:
    """The stored form of an account name in `mode` ('' when nothing is left)."""
    try:
        form = _FORMS[mode]
    except KeyError:
        raise ValueError(f"unknown user name mode {mode!r}; expected one of {', '.join(USER_NAME_MODES)}") from None
    return form(raw or "")


def user_name_normaliser(mode: str) -> Callable[[str], str]:
    """canonical_user in `mode`, cached: ingest calls it once per event."""
    if mode not in _FORMS:
        raise ValueError(f"unknown user name mode {mode!r}; expected one of {', '.join(USER_NAME_MODES)}")
    form = _FORMS[mode]
    cache: dict[str, str] = {}

    def cached(raw: str) -> str:
        try:
            return cache[raw]
        except KeyError:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            value = cache[raw] = form(raw)
            return value

    return cached
