"""checkov and trivy on every render and on the Dockerfile, offline, against the accepted findings in
deploy/k8s/scanner-findings.yaml."""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import HELM_CASES, RENDERS
from .dockerfile_stages import DOCKERFILE
from .tools import DEPLOY, helm_template, kustomize_build, run, tool, yaml

ACCEPTED = yaml.safe_load((DEPLOY / "k8s" / "scanner-findings.yaml").read_text())


def offline(args: list) -> list:
    """The command in a network namespace of its own when the machine allows one: proof that the
    scanners need no network (checkov's and trivy's checks are bundled)."""
    unshare = shutil.which("unshare")
    if unshare and run([unshare, "-n", "true"]).returncode == 0:
        return [unshare, "-n", *args]
    return args


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """Every render as a file of its own, and the Dockerfile."""
    folder = tmp_path_factory.mktemp("scan")
    for name in RENDERS:
        kind, _, case = name.partition(":")
        text = helm_template(HELM_CASES[case]) if kind == "helm" else kustomize_build(case)
        (folder / f"{kind}-{case.replace('/', '-')}.yaml").write_text(text)
    shutil.copy(DOCKERFILE, folder / "Dockerfile")
    return folder


def checkov_findings(folder) -> set[tuple[str, str, str]]:
    result = run(offline([tool("checkov"), "--directory", folder, "--framework", "kubernetes", "dockerfile", "--quiet",
                          "--compact", "--output", "json", "--skip-download"]), timeout=600)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]  # one per framework that found files
    findings = set()
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0 and report["summary"]["resource_count"] > 0, report["summary"]
        findings |= {(f["check_id"], f["resource"], f["file_path"]) for f in report["results"]["failed_checks"]}
    return findings


def trivy_findings(folder) -> set[tuple[str, str, str]]:
    result = run(offline([tool("trivy"), "config", "--skip-check-update", "--cache-dir", folder.parent / "trivy-cache",
                          "--quiet", "--format", "json", folder]), timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["Results"], "trivy scanned nothing"
    return {(m["ID"], m.get("Message", ""), r["Target"]) for r in report["Results"] for m in r.get("Misconfigurations") or []}


def unaccepted(findings: set[tuple[str, str, str]], accepted: dict) -> tuple[list, set[str]]:
    """Findings no entry accepts, and the entries that accepted nothing."""
    used, left = set(), []
    for check, resource, where in sorted(findings):
        entry = accepted.get(check)
        if entry and (not entry.get("only") or any(part in resource for part in entry["only"])):
            used.add(check)
        else:
            left.append(f"{check} {resource} ({where})")
    return left, set(accepted) - used


@pytest.mark.parametrize("scanner, findings", [("checkov", checkov_findings), ("trivy", trivy_findings)])
def test_scanners_find_only_accepted_findings(scanner, findings, scanned):
    left, stale = unaccepted(findings(scanned), ACCEPTED[scanner])
    assert not left, f"{scanner} findings that scanner-findings.yaml does not accept:\n" + "\n".join(left)
    assert not stale, f"{scanner}: accepted findings that no longer occur (remove them): {sorted(stale)}"


def test_every_accepted_finding_says_why():
    for scanner, entries in ACCEPTED.items():
        for check, entry in entries.items():
            assert len(entry.get("reason", "")) > 20 and entry.get("check"), f"{scanner} {check}"


def test_scanners_report_a_privileged_container(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "x"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]},
    }))
    assert "CKV_K8S_16" in {check for check, _, _ in checkov_findings(tmp_path)}
    assert "KSV017" in {check for check, _, _ in trivy_findings(tmp_path)}
