"""Draws who and when for every scenario, attack or look-alike, and has it built."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import random
from typing import Callable

from ueba.simulator.context import ContextBook
from ueba.simulator.labels import ATTACK_KINDS, BENIGN_KINDS, LABEL_KINDS
from ueba.simulator.lookalikes import LookalikeScenarios
from ueba.simulator.org import SCENARIO, Organisation, stream
from ueba.simulator.scenarios import Injected
from ueba.simulator.stealth import StealthScenarios

SPRAYS = ("password_spray", "slow_password_spray")


class Builder(StealthScenarios, LookalikeScenarios):
    """Every kind's builder in one place."""

    def for_kind(self, kind: str) -> Callable[..., Injected | None]:
        return getattr(self, kind)


def plan_scenarios(org: Organisation, book: ContextBook, seed: int, counts: dict[str, int], first_day: int,
                   days: int, window: tuple[int, int]) -> Injected:
    """Draws victims and days for every scenario and builds them. Bulk downloads come first because
    their victims leave the organisation a few days later, which every later choice must see; the
    look-alikes come last and go to users no attack touched, so their days stay clean."""
    builder = Builder(org, book)
    order = ["bulk_download"] + [k for k in ATTACK_KINDS if k != "bulk_download"] + list(BENIGN_KINDS)
    users = list(range(len(org.users)))
    pick = stream(seed, SCENARIO, 0)
    victims = users[:]
    pick.shuffle(victims)
    cursor = itertools.cycle(victims)
    first_day = min(first_day, max(0, days - 1))
    out = Injected([], [])
    leavers: set[int] = set()
    index = {user.name: i for i, user in enumerate(org.users)}
    travellers = [u for u in users if org.plans[u].trips]

    for kind in order:
        benign = kind in BENIGN_KINDS
        for instance in range(counts.get(kind, 0)):
            rng = stream(seed, SCENARIO, LABEL_KINDS.index(kind) + 1, instance)
            attacked = {index[label.user] for label in out.labels if not label.benign} if benign else set()
            for _attempt in range(60):
                day = rng.randint(first_day, days - 1)
                if kind in SPRAYS:
                    injected = builder.for_kind(kind)(rng, day, users)
                    u = -1
                else:
                    if kind == "vpn_traveller":
                        u, day = _trip_day(rng, org, travellers, first_day, days)
                    else:
                        u = next(cursor)
                    if u < 0 or u in leavers or u in attacked:
                        continue
                    before = copy.deepcopy(org.plans[u])  # look-alikes change plans: undone if refused
                    injected = builder.for_kind(kind)(rng, u, day, book.context(u, day))
                if injected is None or not all(window[0] <= r[0] < window[1] for r in injected.records):
                    if u >= 0:
                        org.plans[u] = before
                    continue
                if kind == "bulk_download" and day + 2 < days:
                    _leaves(rng, org, book, injected, u, day, days)
                    leavers.add(u)
                out.records.extend(injected.records)
                out.labels.extend(injected.labels)
                break
    out.records.sort(key=lambda r: r[0])  # stable: equal times keep their build order
    out.labels.sort(key=lambda label: (label.start, label.kind, label.user))
    return out


def _leaves(rng: random.Random, org: Organisation, book: ContextBook, injected: Injected, u: int, day: int,
            days: int) -> None:
    """Gone a few days after a bulk download; the account stays (and can still be attacked)."""
    leaves = day + rng.randint(2, min(5, days - day - 1))
    org.plans[u].departure_day = leaves
    label = injected.labels[0]
    injected.labels[0] = dataclasses.replace(
        label, description=f"{label.description}; leaves the organisation on {book.date_of(leaves)}",
        details={**label.details, "departure": book.date_of(leaves).isoformat()})


def _trip_day(rng: random.Random, org: Organisation, travellers: list[int], first_day: int,
              days: int) -> tuple[int, int]:
    """A traveller and a day of their trip away from home (-1 when there is none)."""
    if not travellers:
        return -1, first_day
    u = rng.choice(travellers)
    away = [d for trip in org.plans[u].trips for d in range(trip.out_day + 1, trip.back_day)
            if first_day <= d < days]
    return (u, rng.choice(away)) if away else (-1, first_day)
