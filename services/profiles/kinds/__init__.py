"""The built-in profile kinds, one class each, and the checks of a whole definition."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.profiles.kinds.base import DIMENSIONS, HistoryNeeds, ProfileDetector, ProfileSpec
from services.profiles.kinds.bulk import BulkDeleteProfile, BulkDownloadProfile, BulkUploadProfile
from services.profiles.kinds.custom import CustomThresholdProfile
from services.profiles.kinds.exfiltration import DataExfiltrationProfile
from services.profiles.kinds.failed_logins import FailedLoginsProfile
from services.profiles.kinds.location import ProximityProfile, RiskyCountriesProfile, SharedCredentialsProfile
from services.profiles.kinds.params import ParameterError
from services.profiles.kinds.rare_event import RareEventProfile

KINDS: dict[str, type[ProfileDetector]] = {
    cls.kind: cls
    for cls in (
        FailedLoginsProfile,
        BulkDownloadProfile,
        BulkUploadProfile,
        BulkDeleteProfile,
        RiskyCountriesProfile,
        ProximityProfile,
        RareEventProfile,
        SharedCredentialsProfile,
        DataExfiltrationProfile,
        CustomThresholdProfile,
    )
}

MAX_NAME = 200
MAX_DESCRIPTION = 2000


def check_definition(
    *,
    name: str,
    kind: str,
    risk_score: int,
    parameters: dict[str, Any] | None,
    applications: list[str] | tuple[str, ...] = (),
    dimension: str = "",
    description: str = "",
    require_name: bool = True,
) -> dict[str, Any]:
    """The normalised parameters of a definition; raises ParameterError naming the field."""
    if require_name and not name.strip():
        raise ParameterError("name", "required")
    if len(name) > MAX_NAME:
        raise ParameterError("name", f"at most {MAX_NAME} characters")
    if len(description) > MAX_DESCRIPTION:
        raise ParameterError("description", f"at most {MAX_DESCRIPTION} characters")
    if kind not in KINDS:
        raise ParameterError("kind", "must be one of " + ", ".join(KINDS))
    if not 1 <= risk_score <= 100:
        raise ParameterError("risk_score", "must be from 1 to 100")
    if dimension and dimension not in DIMENSIONS:
        raise ParameterError("dimension", "must be one of " + ", ".join(DIMENSIONS))
    for i, app in enumerate(applications):
        if not app.strip():
            raise ParameterError(f"applications[{i}]", "must not be empty")
    return KINDS[kind].check_parameters(parameters)


def build_detector(spec: ProfileSpec) -> ProfileDetector:
    """A detector for a stored definition; parameters are checked again so that ones
    added since it was stored get their defaults."""
    if spec.kind not in KINDS:
        raise ParameterError("kind", f"unknown kind {spec.kind!r}")
    params = KINDS[spec.kind].check_parameters(spec.parameters)
    return KINDS[spec.kind](replace(spec, parameters=params))


__all__ = ["KINDS", "ProfileSpec", "ProfileDetector", "HistoryNeeds", "ParameterError", "check_definition", "build_detector"]
