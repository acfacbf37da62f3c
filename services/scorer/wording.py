"""How a model anomaly reads: the phrases naming what was unusual, and the evidence it quotes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from services.scorer.models import BY_NAME, NOVELTY_ENTITY, Feature

# Phrases come from at most this many of the day's strongest scores, models and phrases.
ROWS_READ = 6
MODELS_NAMED = 3
PHRASES = 5
MIN_SHARE = 0.15  # a feature named for its part of the surprise (novelty is named at any share)

# (entity type, hour) -> the user's entities of that type first seen in that hour
FirstSeen = Callable[[str, datetime], list[str]]


@dataclass(frozen=True)
class Wording:
    description: str
    features: list[dict]  # the features quoted, each with its model and hour


def word_day(ranked: list, weights: dict[str, float], threshold: float, first_seen: FirstSeen) -> Wording:
    """The description of a user-day from its hourly scores `ranked` strongest first (rows with
    hour, model, features); `first_seen(entity_type, hour)` names what was new in an hour."""
    phrases: list[str] = []
    used_models: list[str] = []
    quoted: list[dict] = []
    for row in ranked[:ROWS_READ]:
        if row.model in used_models or weights.get(row.model, 1.0) * row.score < threshold:
            continue
        used_models.append(row.model)
        for item in _named_features(row):
            quoted.append({**item, "model": row.model, "hour": row.hour.isoformat()})
            source, name = feature_of(row.model, item["name"])
            feature = next(f for f in BY_NAME[source].features if f.name == name)
            phrase = _phrase(source, feature, item, row.hour, first_seen)
            if phrase not in phrases:
                phrases.append(phrase)
        if len(used_models) == MODELS_NAMED or len(phrases) >= PHRASES:
            break
    model = BY_NAME[ranked[0].model]
    description = "; ".join(p for p in phrases if p) or f"unusual {model_words(model.name)} behaviour"
    return Wording(description, quoted)


def _named_features(row) -> list[dict]:
    """The row's features worth a phrase: its top two by share, and anything new; only those over expected."""
    ranked = sorted(row.features, key=lambda f: -f["share"])
    chosen = [f for f in ranked[:2] if f["share"] >= MIN_SHARE]
    # Something new is always worth naming (the country, the host), even with a small share.
    chosen += [f for f in ranked[2:] if feature_of(row.model, f["name"]) in NOVELTY_ENTITY and f["observed"] > 0]
    return [f for f in chosen if f["observed"] > f["expected"]]


def _phrase(model_name: str, feature: Feature, item: dict, hour: datetime, first_seen: FirstSeen) -> str:
    entities = ""
    entity_type = NOVELTY_ENTITY.get((model_name, feature.name))
    if entity_type:
        names = first_seen(entity_type, hour)
        if entity_type == "city":
            names = [f"{n.split('/', 1)[1]}, {n.split('/', 1)[0]}" if "/" in n else n for n in names]
        entities = ", ".join(names) or "unnamed"
    phrase = feature.phrase or f"{feature.name} {{o}} vs {{e}} expected"
    return phrase.format(o=human(item["observed"]), e=human(item["expected"]), entities=entities)


def model_words(name: str) -> str:
    return name.replace("_", " ")


def feature_of(model: str, name: str) -> tuple[str, str]:
    """(model, feature) a stored feature entry stands for: the corroboration model quotes others' as model.feature."""
    source, _, own = name.rpartition(".")
    return (source, own) if source else (model, name)


def human(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e9:
        return f"{v / 1e9:.1f}G"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"
