"""Rules every rendered object must keep, for the chart under each values case and for every kustomization."""

from __future__ import annotations

import sys

import pytest

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason=f"install the deployment tools with `{sys.executable} deploy/tools/install.py`"
)

from .conftest import HELM_CASES, render
from .tools import KUBE_VERSIONS, SERVICES, by_kind, containers, pod_templates, selects

UEBA_COMPONENTS = set(SERVICES)
# Prometheus Operator, cert-manager and Gateway API kinds: not in the Kubernetes schemas.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "Certificate", "GRPCRoute"}


def component(obj: dict) -> str:
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")


def effective(spec: dict, container: dict, key: str):
    """A securityContext field as the kubelet applies it: the container's, else the pod's."""
    value = container.get("securityContext", {}).get(key)
    return spec.get("securityContext", {}).get(key) if value is None else value


def test_objects_pass_strict_kubernetes_schemas(rendered):
    name, docs = rendered
    for version in KUBE_VERSIONS:
        for doc in docs:
            if doc["kind"] in CUSTOM_KINDS:
                continue  # custom resources: their own tests check them
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_every_container_is_hardened(rendered):
    name, docs = rendered
    assert containers(docs), f"{name} renders no workloads"
    for workload, spec, c in containers(docs):
        where = f"{name}: {workload['kind']}/{workload['metadata']['name']} container {c['name']}"
        assert effective(spec, c, "runAsNonRoot") is True, where
        assert effective(spec, c, "runAsUser") not in (None, 0), where
        sc = c.get("securityContext", {})
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("privileged", False) is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), where
        assert effective(spec, c, "seccompProfile") == {"type": "RuntimeDefault"}, where
        assert spec.get("automountServiceAccountToken") is False, where
        for bound in ("requests", "limits"):
            assert set(c.get("resources", {}).get(bound, {})) >= {"cpu", "memory"}, f"{where}: no {bound}"


def test_every_image_is_pinned(rendered):
    name, docs = rendered
    for workload, _, c in containers(docs):
        image = c["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"


def test_long_running_containers_have_probes(rendered):
    name, docs = rendered
    tls = name in ("helm:tls", "helm:exposed")
    for workload, spec, c in containers(docs):
        if workload["kind"] in ("Job", "Pod") or c in spec.get("initContainers", []):
            continue
        where = f"{name}: {workload['metadata']['name']}"
        assert "readinessProbe" in c and "livenessProbe" in c, where
        if component(workload) in UEBA_COMPONENTS:
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert ports["grpc"] == 50051 and ports["metrics"] == 9090, where
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                # Kubelet's gRPC probes are plaintext; with TLS they ask the health-only port.
                assert c[probe]["grpc"] == {"port": 50052 if tls else 50051}, f"{where} {probe}: {c[probe]}"
            assert ports.get("health") == (50052 if tls else None), where


def test_only_tmp_is_writable(rendered):
    name, docs = rendered
    for workload, spec, c in containers(docs):
        if component(workload) not in UEBA_COMPONENTS | {"migrations"}:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        writable = {m["mountPath"]: volumes[m["name"]] for m in c.get("volumeMounts", []) if not m.get("readOnly")}
        assert list(writable) == ["/tmp"], f"{name}: {workload['metadata']['name']} writes to {list(writable)}"
        assert "emptyDir" in writable["/tmp"]


def test_secrets_come_from_secret_references(rendered):
    name, docs = rendered
    for workload, _, c in containers(docs):
        for env in c.get("env", []):
            if env["name"] in ("DATABASE_URL", "POSTGRES_PASSWORD"):
                assert "secretKeyRef" in env.get("valueFrom", {}), f"{name}: {env['name']} of {c['name']} is not from a Secret"
            assert "postgresql://" not in str(env.get("value", "")), f"{name}: {env}"
    for cm in by_kind(docs, "ConfigMap"):
        text = str(cm.get("data", {}))
        assert "DATABASE_URL" not in text and "postgresql://" not in text, f"{name}: ConfigMap {cm['metadata']['name']}"
    names = {d["metadata"]["name"] for d in by_kind(docs, "Secret")}
    for workload, _, c in containers(docs):
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            # Secrets the release does not make are the operator's: named in the docs and NOTES.
            if ref and ref["name"] not in names:
                assert ref["name"] in ("ueba-database", "ueba-database-replica", "ueba-tls", "ueba-admin-token"), f"{name}: {ref}"


def test_grace_period_exceeds_prestop_and_drain(rendered):
    name, docs = rendered
    config = {cm["metadata"]["name"]: cm.get("data", {}) for cm in by_kind(docs, "ConfigMap")}
    deployments = [d for d in by_kind(docs, "Deployment") if component(d) in UEBA_COMPONENTS]
    assert {component(d) for d in deployments} == UEBA_COMPONENTS, name
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env = {}
        for source in c.get("envFrom", []):
            env.update(config[source["configMapRef"]["name"]])
        env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
        drain = float(env["UEBA_DRAIN_SECONDS"])
        pre_stop = float(c["lifecycle"]["preStop"]["exec"]["command"][1])
        assert spec["terminationGracePeriodSeconds"] > drain + pre_stop, f"{name}: {d['metadata']['name']}"


def test_selectors_match_the_pods(rendered):
    name, docs = rendered
    pods = [(w, t["metadata"]["labels"]) for w, t in pod_templates(docs)]
    for w, labels in pods:
        if w["kind"] not in ("Job", "Pod"):
            assert selects(w["spec"]["selector"], labels), f"{name}: {w['metadata']['name']} does not select its pods"
    for svc in by_kind(docs, "Service"):
        matched = [(w, labels) for w, labels in pods if selects(svc["spec"]["selector"], labels)]
        assert len(matched) == 1, f"{name}: Service {svc['metadata']['name']} selects {[w['metadata']['name'] for w, _ in matched]}"
        port_names = {p["name"] for c in matched[0][0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{name}: Service {svc['metadata']['name']} port {port}"
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        matched = [w for w, labels in pods if selects(pdb["spec"]["selector"], labels)]
        assert [component(w) for w in matched] == [component(pdb)], f"{name}: PDB {pdb['metadata']['name']}"
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments, f"{name}: {hpa['metadata']['name']}"
        assert "replicas" not in deployments[target["name"]]["spec"], f"{name}: {target['name']} fights its autoscaler"
    for policy in by_kind(docs, "NetworkPolicy"):
        matched = [w for w, labels in pods if selects(policy["spec"]["podSelector"], labels)]
        assert matched, f"{name}: NetworkPolicy {policy['metadata']['name']} selects no pods"
        if policy["metadata"]["name"].endswith("default-deny"):
            assert len(matched) == len(pods), f"{name}: default deny misses pods"


def test_services_name_their_ports(rendered):
    name, docs = rendered
    services = {component(s): s for s in by_kind(docs, "Service")}
    for svc in SERVICES:
        ports = {p["name"]: p for p in services[svc]["spec"]["ports"]}
        assert ports["grpc"]["port"] == 50051, f"{name}: {svc}"
    assert services["ingest"]["spec"]["ports"][1]["name"] == "otlp"


def test_autoscalers_and_disruption_budgets():
    docs = render("helm:minimal")
    assert sorted(component(h) for h in by_kind(docs, "HorizontalPodAutoscaler")) == ["ingest", "query"]
    assert sorted(component(p) for p in by_kind(docs, "PodDisruptionBudget")) == sorted(SERVICES)
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        # Never minAvailable: with one replica that would block every node drain.
        assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]


def test_service_monitor_scrapes_metrics_ports():
    for render_name in ("helm:production", "kustomize:overlays/production"):
        docs = render(render_name)
        (monitor,) = by_kind(docs, "ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
        scraped = [s for s in by_kind(docs, "Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
        assert sorted(component(s) for s in scraped) == sorted([*SERVICES, "console"]), render_name
        for svc in scraped:
            assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}, svc["metadata"]["name"]
        for d in by_kind(docs, "Deployment"):
            # Scraped through the Services only, never twice.
            assert "prometheus.io/scrape" not in d["spec"]["template"]["metadata"].get("annotations", {})


TEST_POD = {"app.kubernetes.io/name": "ueba", "app.kubernetes.io/instance": "ueba", "app.kubernetes.io/component": "test"}


@pytest.mark.parametrize("render_name", ["helm:production", "helm:network-policies", "helm:postgresql", "kustomize:overlays/production"])
def test_network_policies_allow_exactly_the_needed_flows(render_name):
    docs = render(render_name)
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "NetworkPolicy")}
    deny = policies.pop("ueba-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    test_policy = policies.pop("ueba-test", None)
    assert (test_policy is not None) == render_name.startswith("helm:"), "the helm test Pod's policy comes with the chart only"
    bundled = "ueba-postgresql" in policies
    production = render_name.endswith("production")
    check_console_policy(policies.pop("ueba-console"), production)
    # Without configured peers a port is open to nobody but the `helm test` Pod (API) or no one (metrics).
    metrics = [{9090}] if production else []
    expected_ingress = {
        "ueba-ingest": [{50051, 4317}, *metrics],
        "ueba-profiles": [{50051}, *metrics],
        "ueba-scorer": [{50051}, *metrics],
        "ueba-delivery": [{50051}, *metrics],
        "ueba-query": [{50051}, *metrics],
        "ueba-migrations": [],
    }
    if bundled:
        expected_ingress["ueba-postgresql"] = [{5432}]
    assert set(policies) == set(expected_ingress)
    for pname, policy in policies.items():
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"], pname
        assert [{p["port"] for p in rule["ports"]} for rule in spec.get("ingress", [])] == expected_ingress[pname], pname
        egress = spec.get("egress", [])
        if pname == "ueba-postgresql":
            assert egress == [], "the bundled Postgres needs no egress"
            (rule,) = spec["ingress"]
            (peer,) = rule["from"]
            allowed = next(e for e in peer["podSelector"]["matchExpressions"] if e["key"] == "app.kubernetes.io/component")
            assert sorted(allowed["values"]) == sorted([*SERVICES, "migrations"])
            continue
        for rule in spec.get("ingress", []):
            assert rule.get("from"), f"{pname}: a port open to everyone"
        if pname != "ueba-migrations":
            peers = spec["ingress"][0]["from"]
            assert {"podSelector": {"matchLabels": TEST_POD}} in peers, pname
            console = {"podSelector": {"matchLabels": {**TEST_POD, "app.kubernetes.io/component": "console"}}}
            called_by_console = pname in ("ueba-query", "ueba-profiles", "ueba-scorer")
            assert (console in peers) == called_by_console, pname
            assert len(peers) > 1 + called_by_console if production else len(peers) == 1 + called_by_console, pname
        assert [sorted({(p["protocol"], p["port"]) for p in rule["ports"]}) for rule in egress] == [
            [("TCP", 5432)],
            [("TCP", 53), ("UDP", 53)],
        ], pname
        db_peers = egress[0].get("to")
        if bundled:
            assert db_peers and db_peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "postgresql"
        else:
            assert db_peers == [{"ipBlock": {"cidr": "10.20.0.0/24"}}], pname
    if test_policy:
        egress = test_policy["spec"]["egress"]
        assert [sorted({p["port"] for p in rule["ports"]}) for rule in egress] == [[50051], [53]]
        assert selects(test_policy["spec"]["podSelector"], TEST_POD)
        (pod,) = by_kind(docs, "Pod")
        assert selects(test_policy["spec"]["podSelector"], pod["metadata"]["labels"])


def check_console_policy(policy: dict, production: bool) -> None:
    """The ingress controller (configured peers only) and Prometheus in; the three services' gRPC and DNS out."""
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert [{p["port"] for p in rule["ports"]} for rule in spec["ingress"]] == ([{8080}, {9090}] if production else [])
    for rule in spec["ingress"]:
        assert rule["from"], "a port open to everyone"
    egress = spec["egress"]
    assert [sorted({(p["protocol"], p["port"]) for p in rule["ports"]}) for rule in egress] == [
        [("TCP", 50051)], [("TCP", 53), ("UDP", 53)]]
    (peer,) = egress[0]["to"]
    allowed = next(e for e in peer["podSelector"]["matchExpressions"] if e["key"] == "app.kubernetes.io/component")
    assert sorted(allowed["values"]) == ["profiles", "query", "scorer"]


def test_network_policies_are_off_by_default():
    assert not by_kind(render("helm:minimal"), "NetworkPolicy")
    assert not by_kind(render("kustomize:base"), "NetworkPolicy")


def test_bundled_postgres_is_off_by_default():
    for name in ("helm:minimal", "helm:production"):
        assert not by_kind(render(name), "StatefulSet")
    (pg,) = by_kind(render("helm:postgresql"), "StatefulSet")
    assert pg["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"

