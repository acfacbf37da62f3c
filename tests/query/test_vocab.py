"""The query service's vocabularies name every model and dimension the scorer and the profiles store,
so that a filter or query string on any of them is accepted."""

from __future__ import annotations

from services.profiles.defaults import DEFAULT_PROFILES
from services.profiles.kinds import KINDS
from services.query.vocab import DIMENSIONS, MODELS
from services.scorer.models import MODELS as SCORER_MODELS


def test_every_scorer_model_and_its_dimensions_are_known():
    assert set(MODELS) == {m.name for m in SCORER_MODELS}
    dimensions = {m.dimension for m in SCORER_MODELS}
    assert dimensions <= set(DIMENSIONS), dimensions - set(DIMENSIONS)


def test_every_rule_profile_dimension_is_known():
    dimensions = {k.default_dimension for k in KINDS.values() if getattr(k, "default_dimension", "")}
    dimensions |= {p.dimension for p in DEFAULT_PROFILES if p.dimension}
    assert dimensions <= set(DIMENSIONS), dimensions - set(DIMENSIONS)
