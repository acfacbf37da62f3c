"""What an operator meets on a real cluster, checked on the rendered objects: the first install,
migrations, the first token, reaching the services from outside, and portability."""

from __future__ import annotations

import re

import pytest

from .conftest import render
from .tools import (
    CHART,
    DEPLOY,
    ROOT,
    SERVICES,
    by_kind,
    helm_fails,
    helm_template,
    objects,
    run,
    selects,
    tool,
    values_file,
    yaml,
)

README = (DEPLOY / "k8s" / "README.md").read_text()
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def deployments(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(docs, "Deployment")}


def pod_spec(docs: list[dict], service: str) -> dict:
    return deployments(docs)[service]["spec"]["template"]["spec"]


# --- 1. first install -------------------------------------------------------


def test_bare_defaults_are_refused_naming_the_image_registry():
    error = helm_fails(values=())
    assert "image.registry is empty" in error and "docker.io/library" in error


def test_a_missing_database_is_refused_with_the_command_that_makes_it():
    error = helm_fails(values=(), sets=("image.registry=reg.example/ueba",))
    assert "kubectl -n default create secret generic ueba-database --from-literal=DATABASE_URL=" in error
    assert "database.existingSecret=ueba-database" in error


@pytest.mark.parametrize("sets", [("database.existingSecret=db",), ("database.url=postgresql://u:p@db/ueba",), ("postgresql.enabled=true",)])
def test_any_database_source_is_enough(sets):
    assert by_kind(objects(helm_template((), ("image.registry=reg.example/ueba", *sets))), "Deployment")


def test_readme_troubleshooting_has_the_commands_an_operator_runs():
    section = README[README.index("## Troubleshooting"):]
    for command in ("kubectl -n ueba logs job/ueba-migrate", "kubectl -n ueba get events", "helm status ueba",
                    "helm rollback ueba", "ImagePullBackOff", "CreateContainerConfigError", "--wait"):
        assert command in section, command


# --- 2. migrations ----------------------------------------------------------


@pytest.mark.parametrize("render_name", ["helm:minimal", "helm:postgresql", "kustomize:base", "kustomize:overlays/production"])
def test_every_service_pod_waits_for_its_schema(render_name):
    docs = render(render_name)
    services = deployments(docs)
    # The console has no database: nothing to wait for, no credentials.
    console = services.pop("console")["spec"]["template"]["spec"]
    assert "initContainers" not in console and "DATABASE_URL" not in {e["name"] for e in console["containers"][0]["env"]}
    for service, d in services.items():
        spec = d["spec"]["template"]["spec"]
        (init,) = spec["initContainers"]
        assert init["command"][:3] == ["ueba", "migrate", "--wait"], service
        # The service's own image: it waits for the schema that image needs.
        assert init["image"] == spec["containers"][0]["image"], service
        assert [e["name"] for e in init["env"]] == ["DATABASE_URL"], service


def test_migration_job_bounds_lock_waits_and_retries():
    (job,) = by_kind(objects(helm_template(sets=("migrations.lockTimeoutSeconds=3", "migrations.attempts=4"))), "Job")
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["ueba", "migrate", "--lock-timeout", "3", "--attempts", "4"]


def test_helm_timeout_guidance_exceeds_the_job_deadline():
    deadline = VALUES["migrations"]["activeDeadlineSeconds"]
    timeouts = {int(m) for m in re.findall(r"helm (?:install|upgrade) [^\n]*--timeout (\d+)m", README)}
    assert timeouts, "the README's helm install/upgrade commands give no --timeout"
    assert all(t * 60 > deadline for t in timeouts), (timeouts, deadline)


# --- 3. the first token -----------------------------------------------------


def test_helm_test_pod_checks_health_then_get_summary_with_the_admin_token():
    docs = objects(helm_template())
    (pod,) = by_kind(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    (health,) = spec["initContainers"]
    addresses = health["command"][3:]
    assert addresses == [f"ueba-{name}.ueba.svc:50051" for name in SERVICES]
    (summary,) = spec["containers"]
    assert summary["command"] == ["ueba", "summary", "--address", "ueba-query.ueba.svc:50051"]
    for c in (health, summary):
        token = next(e for e in c["env"] if e["name"] == "UEBA_TOKEN")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "ueba-admin-token", "key": "UEBA_TOKEN", "optional": True}


def test_first_token_one_liner_needs_no_password_on_the_command_line():
    section = README[README.index("## First admin token"):]
    command = section[section.index("kubectl -n ueba exec"):section.index("```", section.index("kubectl -n ueba exec"))]
    assert "deploy/ueba-query" in command and "ueba tokens create" in command
    assert "postgresql://" not in command and "DATABASE_URL" not in command
    assert "--from-file=UEBA_TOKEN=/dev/stdin" in command


# --- 4. reaching the services -----------------------------------------------


def test_exposed_services_keep_their_names_ports_and_certificate():
    docs = render("helm:exposed")
    ingest = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "ueba-ingest")["spec"]
    assert ingest["type"] == "LoadBalancer" and ingest["externalTrafficPolicy"] == "Local"
    assert ingest["loadBalancerSourceRanges"] == ["192.0.2.0/24"] and ingest["loadBalancerClass"] == "service.k8s.aws/nlb"
    (ingress,) = by_kind(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "ueba-query", "port": {"name": "grpc"}}
    (route,) = by_kind(docs, "GRPCRoute")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "ueba-ingest", "port": 50051}]
    (cert,) = by_kind(docs, "Certificate")
    assert cert["spec"]["secretName"] == "ueba-tls"
    for name in SERVICES:
        assert f"ueba-{name}.ueba.svc" in cert["spec"]["dnsNames"]
    assert "ingest.example.com" in cert["spec"]["dnsNames"]
    # cert-manager writes the Secret: the chart makes none and needs no PEM text.
    assert not [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "ueba-tls"]


@pytest.mark.parametrize("sets, message", [
    (("ingest.service.externalTrafficPolicy=Sometimes",), "externalTrafficPolicy"),
    (("ingest.service.loadBalancerSourceRanges[0]=everyone",), "loadBalancerSourceRanges"),
    (("tls.enabled=true", "tls.certManager.enabled=true"), "issuerRef"),
    (("ingress.enabled=true", "ingress.hosts[0].host=q.example", "ingress.hosts[0].service=console"), "service"),
])
def test_exposure_values_are_checked(sets, message):
    assert message in helm_fails(sets=sets)


# --- 5. portability ---------------------------------------------------------


def test_every_object_names_its_namespace(rendered):
    name, docs = rendered
    for doc in docs:
        assert doc["metadata"].get("namespace") == "ueba", f"{name}: {doc['kind']}/{doc['metadata']['name']}"


def test_dns_peers_and_ports_are_configurable():
    sets = ("networkPolicy.dnsPorts[0]=5353", "networkPolicy.dnsTo[0].ipBlock.cidr=169.254.20.10/32")
    docs = objects(helm_template(("networkpolicy",), sets))
    for policy in by_kind(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            ports = {p["port"] for p in rule["ports"]}
            if 5353 in ports:
                assert ports == {5353} and rule["to"] == [{"ipBlock": {"cidr": "169.254.20.10/32"}}]
            assert 53 not in ports, policy["metadata"]["name"]


def test_network_policies_need_the_database_address():
    assert "networkPolicy.databaseTo" in helm_fails(sets=("networkPolicy.enabled=true",))


def test_pods_spread_softly_by_default_whatever_the_release_name():
    args = [tool("helm"), "template", "siem", CHART, "-n", "ueba", "-f", values_file("production")]
    result = run(args)
    assert result.returncode == 0, result.stderr
    docs = objects(result.stdout)
    for service, d in deployments(docs).items():
        spec = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert selects(term["podAffinityTerm"]["labelSelector"], labels), service
        for constraint in spec.get("topologySpreadConstraints", []):
            assert selects(constraint["labelSelector"], labels), service
    assert deployments(docs)["ingest"]["spec"]["template"]["spec"]["topologySpreadConstraints"]


def test_anti_affinity_can_be_hard_or_off_and_own_affinity_wins():
    hard = pod_spec(objects(helm_template(sets=("podAntiAffinity=hard",))), "query")
    assert hard["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert "affinity" not in pod_spec(objects(helm_template(sets=("podAntiAffinity=none",))), "query")
    own = pod_spec(objects(helm_template(sets=("query.affinity.nodeAffinity.x=y",))), "query")
    assert own["affinity"] == {"nodeAffinity": {"x": "y"}}


def test_escape_hatches_reach_the_pods():
    sets = (
        "scorer.podLabels.team=soc",
        "scorer.podAnnotations.note=x",
        "scorer.priorityClassName=ueba-critical",
        "scorer.extraEnv[0].name=HTTPS_PROXY",
        "scorer.extraEnv[0].value=http://proxy:3128",
        "scorer.extraVolumes[0].name=ca",
        "scorer.extraVolumes[0].configMap.name=corp-ca",
        "scorer.extraVolumeMounts[0].name=ca",
        "scorer.extraVolumeMounts[0].mountPath=/etc/ssl/corp",
        "scorer.extraVolumeMounts[0].readOnly=true",
    )
    d = deployments(objects(helm_template(sets=sets)))["scorer"]
    template = d["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "soc" and template["metadata"]["annotations"]["note"] == "x"
    assert d["spec"]["selector"]["matchLabels"].get("team") is None, "pod labels never enter the selector"
    spec = template["spec"]
    assert spec["priorityClassName"] == "ueba-critical"
    c = spec["containers"][0]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in c["env"]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in spec["volumes"]
    assert {"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": True} in c["volumeMounts"]


def connection_budget(values: dict, auth_pool: int = 2) -> int:
    """Connections at the maxima, from the services' own defaults: the chart's figure must equal it."""
    from services.query.settings import QuerySettings
    from ueba.settings import BaseSettings

    total = 1  # the migration Job
    for name in SERVICES:
        svc = values[name]
        pods = svc["autoscaling"]["maxReplicas"] if svc.get("autoscaling", {}).get("enabled") else svc["replicas"]
        pool = int(svc["settings"].get("UEBA_DB_POOL_SIZE", BaseSettings.db_pool_size))
        processes = int(svc["settings"].get("UEBA_QUERY_WORKERS", QuerySettings.workers)) if name == "query" else 1
        total += (pods + 1) * processes * (2 * pool + 2 * auth_pool)
    return total


def test_connection_budget_fails_the_render_when_over_max_connections():
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    production = yaml.safe_load(values_file("production").read_text())
    for name in SERVICES:
        merged[name].update({k: v for k, v in production[name].items() if k in ("replicas", "autoscaling")})
        merged[name]["settings"].update(production[name].get("settings", {}))
    needed = connection_budget(merged)
    assert needed <= production["database"]["maxConnections"]
    error = helm_fails(("production",), (f"database.maxConnections={needed - 1}",))
    assert f"can open {needed} Postgres connections" in error
    assert by_kind(objects(helm_template(("production",), (f"database.maxConnections={needed}",))), "Deployment")
    # A smaller pool brings it back under.
    result = run([tool("helm"), "template", "ueba", CHART, "-f", values_file("production"), "--set",
                  f"database.maxConnections={needed - 1}", "--set-string", "ingest.settings.UEBA_DB_POOL_SIZE=4"])
    assert result.returncode == 0, result.stderr


def test_a_changed_chart_secret_rolls_the_pods():
    def checksums(url: str) -> set[str]:
        docs = objects(helm_template((), ("image.registry=reg.example", f"database.url={url}")))
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"] for d in by_kind(docs, "Deployment")
                if d["metadata"]["name"] != "ueba-console"}  # it reads no Secret of the chart's but the TLS one

    before, after = checksums("postgresql://u:a@db/ueba"), checksums("postgresql://u:b@db/ueba")
    assert len(before) == 1 and before != after


def exported_metrics() -> set[str]:
    """Every metric name the services define, with a histogram's series names."""
    names = set()
    for path in list((ROOT / "services").rglob("*.py")) + list((ROOT / "ueba").rglob("*.py")):
        text = path.read_text()
        for kind, name in re.findall(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(ueba_[a-z_]+)\"", text):
            names.add(name)
            if kind == "Histogram":
                names.update({f"{name}_bucket", f"{name}_count", f"{name}_sum"})
    return names


def test_alerts_use_only_metrics_the_services_export():
    (rule,) = by_kind(render("helm:exposed"), "PrometheusRule")
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"UebaIngestRejectingEvents", "UebaEvaluatorStalled", "UebaQueryReplicaLagging", "UebaServerErrors",
            "UebaScoringRunsFailing"} <= set(alerts)
    known = exported_metrics() | {"up"}
    for alert, expr in alerts.items():
        used = set(re.findall(r"\b((?:ueba_[a-z_]+)|up)\{", expr))
        assert used and used <= known, f"{alert}: {used - known}"
    # The replica's alerts only where there is a replica.
    plain = objects(helm_template(sets=("metrics.prometheusRule.enabled=true",)))
    (rule,) = by_kind(plain, "PrometheusRule")
    assert not [r for g in rule["spec"]["groups"] for r in g["rules"] if "Replica" in r["alert"]]


def test_runtime_images_leave_the_build_tools_behind():
    from .dockerfile_stages import stages

    build = " ".join(" ".join(c.value) for c in stages()["build"].all("RUN"))
    assert re.search(r"pip uninstall --yes pgserver grpcio-tools setuptools", build)
    assert "python -m pip uninstall --yes pip" in build
    runtime = " ".join(" ".join(c.value) for c in stages()["runtime"].all("RUN"))
    assert "pip uninstall --yes --no-input pip setuptools wheel" in runtime

