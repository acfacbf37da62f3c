"""Plain manifests: the kustomizations build, lint, and stay the same objects as the chart renders."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

from .tools import CHART, DEPLOY, KUSTOMIZE, helm_template, keyed, kustomize_build, objects, run, tool, yaml

# Each kustomization and the chart values it must equal.
PAIRS = {
    "base": ("minimal",),
    "overlays/dev": ("dev",),
    "overlays/production": ("production",),
}


def compose(folder: Path, components: list[str]) -> str:
    """A kustomization of the base with some components, as an operator would write one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": "ueba",
            "resources": [os.path.relpath(KUSTOMIZE / "base", folder)],
            "components": [os.path.relpath(KUSTOMIZE / "components" / c, folder) for c in components],
        })
    )
    result = run([tool("kubectl"), "kustomize", folder])
    assert result.returncode == 0, result.stderr
    return result.stdout


def describe(doc: dict) -> list[str]:
    return json.dumps(doc, indent=1, sort_keys=True).splitlines()


def assert_same(chart_text: str, plain_text: str) -> None:
    chart = keyed(objects(chart_text))
    plain = keyed(objects(plain_text))
    assert sorted(plain) == sorted(chart), "kinds and names differ"
    diffs = []
    for key in sorted(chart):
        if chart[key] != plain[key]:
            diff = difflib.unified_diff(describe(chart[key]), describe(plain[key]), "helm", "kustomize", n=2, lineterm="")
            diffs.append(f"{key}:\n" + "\n".join(diff))
    assert not diffs, "\n\n".join(diffs)


@pytest.mark.parametrize("path", list(PAIRS))
def test_kustomization_matches_the_chart(path):
    assert_same(helm_template(PAIRS[path]), kustomize_build(path))


def test_network_policy_component_matches_the_chart(tmp_path):
    # The production overlay replaces the peers, so the component's defaults are compared on their own.
    assert_same(helm_template(("networkpolicy",)), compose(tmp_path / "netpol", ["network-policies"]))


def workload_summary(docs: list[dict]) -> dict:
    """What the brief names for the comparison, so a mismatch reads plainly: images, ports, probes, env names, security."""
    summary = {}
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        spec = d["spec"]["template"]["spec"]
        for c in spec["containers"]:
            summary[(d["kind"], d["metadata"]["name"], c["name"])] = {
                "image": c["image"],
                "ports": sorted((p["name"], p["containerPort"]) for p in c.get("ports", [])),
                "probes": {k: c.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")},
                "env": sorted(e["name"] for e in c.get("env", [])),
                "security": (spec.get("securityContext"), c.get("securityContext")),
            }
    return summary


@pytest.mark.parametrize("path", list(PAIRS))
def test_workloads_match_in_what_operators_see(path):
    chart = workload_summary(list(keyed(objects(helm_template(PAIRS[path]))).values()))
    plain = workload_summary(list(keyed(objects(kustomize_build(path))).values()))
    assert plain == chart


def test_yaml_lint():
    files = [CHART / "values.yaml", CHART / "Chart.yaml", CHART / "ci", KUSTOMIZE, DEPLOY / "k8s" / "scanner-findings.yaml"]
    result = run([tool("yamllint"), "--strict", "-f", "parsable", "-c", DEPLOY / "k8s" / ".yamllint", *files])
    assert result.returncode == 0, result.stdout + result.stderr


def test_yaml_lint_catches_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nb:   [1,2]\n")
    result = run([tool("yamllint"), "--strict", "-f", "parsable", "-c", DEPLOY / "k8s" / ".yamllint", bad])
    assert result.returncode != 0 and "key-duplicates" in result.stdout


def test_generated_config_maps_roll_the_pods():
    docs = objects(kustomize_build("base"))
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    assert all(name.startswith("ueba-") and len(name.split("-")) == 3 for name in names), names
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] != "ueba-console":  # the console has no ConfigMap
            ref = d["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
            assert ref in names
