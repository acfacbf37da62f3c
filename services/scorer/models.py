"""The behaviour models: their features, how each feature is judged, and their threat weight.

Every stored hourly feature belongs to one model's row in user_hour_features.
A feature's `kind` says how its expected value and tail probability are found:

- count:    expected from the user's hour-of-week profile, shrunk toward the
            user's overall rate and the peers'; tail under a negative binomial
            whose dispersion is the user's (shrunk toward the peers').
- novelty:  something new to the user; expected from how often this user, and
            its peers, met something new once past their learning period.
- ratio:    failures out of attempts; binomial tail at the expected ratio.
- activity: being active at this hour of the week at all; the tail is the
            probability of activity there.
- peer:     a count compared with the peer group's profile instead of the user's.
- combined: another model's feature, quoted by the corroboration model.

`unit` turns a magnitude into the count the tail is computed on (bytes in MB,
distances in 100 km), so that one count model serves every feature.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    kind: str = "count"
    unit: float = 1.0
    # How the feature reads in an anomaly description: {o} observed, {e} expected.
    phrase: str = ""
    source: str = ""  # for ratio and peer features: the stored feature(s) they derive from
    # Heavy-tailed magnitudes (bytes, distances): a user's month without a burst says
    # little, so the user's dispersion is never taken tighter than the peers'.
    heavy_tailed: bool = False
    # The most one hour may add to the baseline: an attack (a spray across many
    # accounts) must not teach everyone's baseline that attacks are normal.
    baseline_cap: float | None = None
    # What the feature's evidence is about, where that is not its model's dimension (a peer
    # re-reading of data volumes is data; an hour's event count is volume, see RESTATING).
    dimension: str = ""


# Dimensions whose evidence restates the others': an hour's or one origin's event count is the sum
# of what the other features count, and the corroboration model combines two other models. In a
# user-day's calibrated score they stand only when strongest and never add to the others.
RESTATING = frozenset({"volume", "combined"})


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    dimension: str
    weight: float
    features: tuple[Feature, ...]

    @property
    def stored(self) -> tuple[Feature, ...]:
        """Features kept in user_hour_features (derived ones are computed when scoring)."""
        return tuple(f for f in self.features if f.kind in ("count", "novelty"))

    @property
    def mixed(self) -> bool:
        """Whether some feature's evidence is about another dimension than the model's."""
        return any(f.dimension and f.dimension != self.dimension for f in self.features)

    def dimension_of(self, feature: str | None) -> str:
        """The dimension of the named feature's evidence (the model's for an unknown or missing name)."""
        for f in self.features:
            if f.name == feature:
                return f.dimension or self.dimension
        return self.dimension


AUTHENTICATION = Model(
    "authentication",
    "Logon and credential events: successes, failures, the failure ratio, event types new to the user and"
    " failures from countries the account never acted from",
    "authentication",
    1.0,
    (
        Feature("successes", "successful authentications", phrase="{o} successful logons vs {e} expected"),
        Feature("failures", "failed authentications", phrase="{o} failed logons vs {e} expected"),
        Feature("failure_ratio", "failures out of all attempts", "ratio", source="failures,successes",
                phrase="failure ratio {o} vs {e} expected"),
        Feature("new_event_types", "event types the user never produced before", "novelty",
                phrase="{o} new event types ({entities})"),
        # Where a failed logon came from says nothing of where the user is (the location model
        # leaves failures out), but an attempt from a country the account never acted from is
        # how sprays and stuffing look from the account's side.
        Feature("failures_from_new_countries", "countries failed logons came from that the account never acted from",
                "novelty", phrase="failed logons from {o} countries the account never acted from"),
    ),
)

IMPACTED_HOST = Model(
    "impacted_host",
    "Destination hosts the user reaches: how many, how many are new, connections, and the most to one host",
    "host",
    0.9,
    (
        Feature("distinct_hosts", "distinct destination hosts", phrase="{o} destination hosts vs {e} expected"),
        Feature("new_hosts", "destination hosts new to the user", "novelty", phrase="{o} new hosts ({entities})"),
        Feature("connections", "connections to destination hosts", phrase="{o} host connections vs {e} expected"),
        Feature("max_to_one_host", "most connections to a single host", phrase="{o} connections to one host vs {e} expected"),
    ),
)

LOGIN_TIME = Model(
    "login_time",
    "When the user is active: activity at this hour of the week against the user's own pattern",
    "time",
    0.5,
    (
        Feature("active", "activity at this hour of the week (observed 1; expected is its probability)", "activity",
                phrase="active at an unusual hour (probability {e})"),
        Feature("events", "events in the hour", phrase="{o} events in the hour vs {e} expected", dimension="volume"),
    ),
)

ORIGIN_HOST = Model(
    "origin_host",
    "Where the user connects from: distinct and new origin hosts or addresses, and the most attempts from one",
    "host",
    0.8,
    (
        Feature("distinct_origins", "distinct origin hosts or addresses", phrase="{o} origin hosts vs {e} expected"),
        Feature("new_origins", "named origin hosts new to the user", "novelty", phrase="{o} new origin hosts ({entities})"),
        Feature("new_source_ips", "source addresses new to the user", "novelty", phrase="{o} new source addresses ({entities})"),
        Feature("max_from_one_origin", "most events from a single origin", phrase="{o} attempts from one origin vs {e} expected",
                dimension="volume"),
        Feature("max_accounts_failing_from_origin",
                "most distinct accounts failing to log on from one of the user's origins in the hour (spraying)",
                phrase="{o} accounts failing from the same origin vs {e} expected", baseline_cap=2.0),
    ),
)

ORIGIN_LOCATION = Model(
    "origin_location",
    "Where the user is: distinct and new countries and cities, distance and implied speed between consecutive"
    " locations (failed logons left out: they place whoever tried the account, not the user)",
    "location",
    1.0,
    (
        Feature("distinct_countries", "distinct countries", phrase="{o} countries vs {e} expected"),
        Feature("new_countries", "countries new to the user", "novelty", phrase="new country {entities}"),
        Feature("distinct_cities", "distinct cities", phrase="{o} cities vs {e} expected"),
        Feature("new_cities", "cities new to the user", "novelty", phrase="new city {entities}"),
        Feature("max_distance_km", "largest distance between consecutive locations (km)", unit=100.0,
                phrase="moved {o} km vs {e} km expected"),
        Feature("max_speed_kmh", "highest implied speed between consecutive locations (km/h)", unit=100.0,
                phrase="implied speed {o} km/h vs {e} km/h expected"),
    ),
)

DATA_MOVEMENT = Model(
    "data_movement",
    "Files and bytes downloaded, uploaded, deleted and shared, and applications new to the user",
    "data",
    1.0,
    (
        Feature("files_downloaded", "files downloaded", phrase="{o} files downloaded vs {e} expected"),
        Feature("bytes_downloaded", "bytes downloaded", unit=1e6, heavy_tailed=True, phrase="{o} bytes downloaded vs {e} expected"),
        Feature("files_uploaded", "files uploaded", phrase="{o} files uploaded vs {e} expected"),
        Feature("bytes_uploaded", "bytes uploaded", unit=1e6, heavy_tailed=True, phrase="{o} bytes uploaded vs {e} expected"),
        Feature("files_deleted", "files deleted", phrase="{o} files deleted vs {e} expected"),
        Feature("files_shared", "files shared", phrase="{o} files shared vs {e} expected"),
        Feature("new_applications", "applications new to the user used to move data", "novelty",
                phrase="new application {entities}"),
    ),
)

# The peer model re-reads other models' counts against the peer group's profile; each re-reading
# is evidence about what its source feature is about.
_SOURCE_DIMENSION = {"authentication": "authentication", "impacted_host": "host", "origin_host": "host",
                     "origin_location": "location", "login_time": "volume", "data_movement": "data"}
_PEER_SOURCES = (
    ("failures", "authentication", "failed logons"),
    ("distinct_hosts", "impacted_host", "destination hosts"),
    ("connections", "impacted_host", "host connections"),
    ("distinct_origins", "origin_host", "origin hosts"),
    ("distinct_countries", "origin_location", "countries"),
    ("events", "login_time", "events in the hour"),
    ("files_downloaded", "data_movement", "files downloaded"),
    ("bytes_downloaded", "data_movement", "bytes downloaded"),
    ("files_uploaded", "data_movement", "files uploaded"),
    ("bytes_uploaded", "data_movement", "bytes uploaded"),
    ("files_deleted", "data_movement", "files deleted"),
    ("files_shared", "data_movement", "files shared"),
)

PEER_GROUP = Model(
    "peer_group",
    "The user's hour against the peer group's profile at the same hour of the week, on the other models' counts",
    "peer",
    0.6,
    tuple(
        Feature(f"peer_{name}", f"{label} against peers", "peer",
                unit=1e6 if name.startswith("bytes") else 1.0,
                source=f"{model}.{name}", phrase=f"{{o}} {label} vs {{e}} for peers",
                dimension=_SOURCE_DIMENSION[model])
        for name, model, label in _PEER_SOURCES
    ),
)

# The models whose evidence is independent enough to corroborate one another within an hour:
# peer_group re-reads their counts, and login_time enters through its activity probability
# (its event count repeats the others' volumes).
CORROBORATING = (AUTHENTICATION, IMPACTED_HOST, ORIGIN_HOST, ORIGIN_LOCATION, DATA_MOVEMENT)

# Scored from the other models' tail probabilities (scoring.corroborate); each row names the
# features it drew on as "model.feature".
CORROBORATION = Model(
    "corroboration",
    "The hour as a whole: how unlikely it is to be active at this hour of the week and to show"
    " the two strongest models' evidence together",
    "combined",
    1.0,
    (
        Feature("active", "activity at this hour of the week (login_time.active)", "combined"),
        Feature("strongest", "the decisive feature of the model with the smallest tail probability", "combined"),
        Feature("second", "the decisive feature of the model with the next smallest", "combined"),
    ),
)

MODELS: tuple[Model, ...] = (AUTHENTICATION, IMPACTED_HOST, LOGIN_TIME, ORIGIN_HOST, ORIGIN_LOCATION, DATA_MOVEMENT, PEER_GROUP,
                             CORROBORATION)
BY_NAME = {m.name: m for m in MODELS}
# Models whose features are aggregated from events (peer_group reuses theirs).
AGGREGATED = tuple(m for m in MODELS if m.stored)

# Novelty features and the entity_seen type whose first sightings they count.
NOVELTY_ENTITY = {
    ("authentication", "new_event_types"): "event_type",
    ("impacted_host", "new_hosts"): "destination_host",
    ("origin_host", "new_origins"): "source_host",
    ("origin_host", "new_source_ips"): "source_ip",
    ("origin_location", "new_countries"): "country",
    ("origin_location", "new_cities"): "city",
    ("data_movement", "new_applications"): "application",
}
