"""Fixtures of the deployment tests: rendered manifests and a database migrated by the Job's command."""

from __future__ import annotations

import copy
import functools

import pytest

# Every values file under ci/: what the chart tests render (the bare defaults
# are refused: no image registry, no database).
HELM_CASES = {
    "minimal": ("minimal",),
    "dev": ("dev",),
    "production": ("production",),
    "network-policies": ("networkpolicy",),
    "postgresql": ("postgresql",),
    "tls": ("tls",),
    "exposed": ("exposed",),
}
KUSTOMIZE_CASES = ("base", "overlays/dev", "overlays/production")
RENDERS = [f"helm:{case}" for case in HELM_CASES] + [f"kustomize:{path}" for path in KUSTOMIZE_CASES]


def render(name: str) -> list[dict]:
    """The objects of a render, parsed once per session; each caller gets its own copy to change."""
    return copy.deepcopy(_parsed(name))


@functools.lru_cache(maxsize=None)
def _parsed(name: str) -> list[dict]:
    from .tools import helm_template, kustomize_build, objects  # late: needs the deployment tools' packages

    tool, _, case = name.partition(":")
    if tool == "helm":
        return objects(helm_template(HELM_CASES[case]))
    return objects(kustomize_build(case))


@pytest.fixture(params=RENDERS)
def rendered(request) -> tuple[str, list[dict]]:
    """(render name, objects) for every helm values case and every kustomization."""
    return request.param, render(request.param)


@pytest.fixture(scope="session", autouse=True)
def cached_kubernetes_schemas():
    # kubernetes-validate re-reads its (large) schema files on every object;
    # the files never change during a run.
    try:
        from kubernetes_validate import utils as kv_utils
    except ImportError:  # the tests that need it skip
        yield
        return
    original = kv_utils.schema_contents
    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(original)
    yield
    kv_utils.schema_contents = original
