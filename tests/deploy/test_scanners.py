"""checkov and trivy on every render and on the Dockerfile, offline, against the accepted findings in
deploy/k8s/scanner-findings.yaml."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

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


# A pod each scanner must flag, scanned with the renders: proof that the scanner ran its checks,
# at no second start of either scanner (each start costs tens of seconds).
PROBE = "privileged-probe.yaml"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """Every render as a file of its own, the Dockerfile and the privileged probe."""
    folder = tmp_path_factory.mktemp("scan")
    for name in RENDERS:
        kind, _, case = name.partition(":")
        text = helm_template(HELM_CASES[case]) if kind == "helm" else kustomize_build(case)
        (folder / f"{kind}-{case.replace('/', '-')}.yaml").write_text(text)
    shutil.copy(DOCKERFILE, folder / "Dockerfile")
    (folder / PROBE).write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "x"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]},
    }))
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
    # Only the scanners for what the folder holds: the others cost start-up time and find nothing.
    result = run(offline([tool("trivy"), "config", "--skip-check-update", "--cache-dir", folder.parent / "trivy-cache",
                          "--misconfig-scanners", "kubernetes,dockerfile",
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


SCANNERS = {"checkov": checkov_findings, "trivy": trivy_findings}


@pytest.fixture(scope="module")
def findings(scanned):
    """scanner name -> its findings on the scanned folder. Each scanner runs once, both at once
    (they are separate processes: on a machine with cores to spare the second costs no time)."""
    with ThreadPoolExecutor(len(SCANNERS)) as pool:
        running = {name: pool.submit(scan, scanned) for name, scan in SCANNERS.items()}
        yield lambda scanner: running[scanner].result()


@pytest.mark.parametrize("scanner", SCANNERS)
def test_scanners_find_only_accepted_findings(scanner, findings):
    left, stale = unaccepted({f for f in findings(scanner) if PROBE not in f[2]}, ACCEPTED[scanner])
    assert not left, f"{scanner} findings that scanner-findings.yaml does not accept:\n" + "\n".join(left)
    assert not stale, f"{scanner}: accepted findings that no longer occur (remove them): {sorted(stale)}"


def test_every_accepted_finding_says_why():
    for scanner, entries in ACCEPTED.items():
        for check, entry in entries.items():
            assert len(entry.get("reason", "")) > 20 and entry.get("check"), f"{scanner} {check}"


@pytest.mark.parametrize("scanner, check", [("checkov", "CKV_K8S_16"), ("trivy", "KSV017")])
def test_scanners_report_a_privileged_container(scanner, check, findings):
    assert check in {found for found, _, where in findings(scanner) if PROBE in where}
