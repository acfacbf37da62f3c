"""The Helm chart: helm lint, the values schema, hooks, image tags and NOTES, by real helm."""

from __future__ import annotations

import shutil
import tomllib

import pytest

from .conftest import HELM_CASES
from .tools import CHART, ROOT, by_kind, containers, helm_fails, helm_template, objects, run, tool, values_file, yaml


@pytest.mark.parametrize("case", list(HELM_CASES))
def test_helm_lint(case):
    args = [tool("helm"), "lint", "--strict", CHART]
    for name in HELM_CASES[case]:
        args += ["-f", values_file(name)]
    result = run(args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    "sets, message",
    [
        (("ingest.image.tag=latest",), "ingest.image.tag"),
        (("image.tag=latest",), "image.tag"),
        (("replicaCount=3",), "replicaCount"),
        (("query.bogus=1",), "bogus"),
        (("query.settings.UEBA_LISTEN=0.0.0.0:1",), "UEBA_LISTEN"),
        (("query.settings.UEBA_QUERY_READ_DATABASE_URL=postgresql://r/db",), "UEBA_QUERY_READ_DATABASE_URL"),
        (("query.settings.listen=x",), "listen"),
        (("scorer.settings.UEBA_BASELINE_DAYS=30",), "scorer.settings.UEBA_BASELINE_DAYS"),
        (("ingest.resources.limits=null",), "limits"),
        (("config.logLevel=TRACE",), "logLevel"),
        (("database.url=mysql://x",), "database.url"),
        (("networkPolicy.ingestFrom=everyone",), "ingestFrom"),
    ],
)
def test_schema_refuses_bad_values(sets, message):
    assert message in helm_fails(sets=sets)


def test_grace_period_must_exceed_drain():
    error = helm_fails(sets=("config.drainSeconds=30",))
    assert "terminationGracePeriodSeconds" in error and "drainSeconds" in error


def test_tls_needs_material():
    assert "tls.existingSecret" in helm_fails(sets=("tls.enabled=true",))


def test_app_version_is_the_project_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == project


def test_image_tag_defaults_to_app_version():
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    images = {c["image"] for _, _, c in containers(objects(helm_template()))}
    assert images == {f"registry.example.com/ueba/ueba-{name}:{app_version}" for name in ("ingest", "profiles", "scorer", "query", "delivery", "console", "cli")}
    images = {c["image"] for _, _, c in containers(objects(helm_template(sets=("image.tag=1.2.3", "image.registry=reg.example/ueba/", "query.image.tag=1.2.4"))))}
    assert "reg.example/ueba/ueba-ingest:1.2.3" in images and "reg.example/ueba/ueba-query:1.2.4" in images


def test_migrations_run_before_install_and_upgrade():
    (job,) = by_kind(objects(helm_template()), "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["ueba", "migrate", "--lock-timeout", "10", "--attempts", "30"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_a_chart_made_database_secret_reaches_the_hook():
    sets = ("image.registry=reg.example", "database.url=postgresql://u:p@db:5432/ueba")
    docs = objects(helm_template((), sets))
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    (job,) = by_kind(docs, "Job")
    ref = job["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
    hook_secret = secrets[ref["name"]]
    # The Secret the hook reads must exist before it: a hook itself, with a lower weight.
    assert hook_secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert "ueba-database" in secrets and "helm.sh/hook" not in secrets["ueba-database"]["metadata"].get("annotations", {})
    assert "postgresql://u:p@db" not in helm_template((), sets)


def test_bundled_postgres_migrates_after_it_starts():
    docs = objects(helm_template(("postgresql",)))
    (job,) = by_kind(docs, "Job")
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    assert job["metadata"]["name"] == "ueba-migrate-r1"
    (secret,) = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == "ueba-postgresql"]
    assert len(secret["data"]["password"]) >= 32


def test_existing_secrets_are_used_as_given():
    docs = objects(helm_template(sets=("database.existingSecret=my-db", "database.secretKey=url")))
    assert not by_kind(docs, "Secret")
    for workload, _, c in containers(docs):
        if workload["kind"] == "Pod" or workload["metadata"]["name"] == "ueba-console":
            continue  # neither the `helm test` Pod nor the console reads the database
        refs = [e["valueFrom"]["secretKeyRef"] for e in c["env"] if e["name"] == "DATABASE_URL"]
        assert refs == [{"name": "my-db", "key": "url"}], c["name"]


def test_tls_mounts_the_certificate():
    docs = objects(helm_template(("tls",)))
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    console = deployments.pop("ueba-console")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in console["containers"][0]["env"]}
    # HTTPS with the same certificate; the services' certificate checked against the CA,
    # and presented as the client certificate that clientAuth requires.
    assert env["UEBA_TLS_CERT_FILE"] == env["UEBA_TLS_CLIENT_CERT_FILE"] == "/etc/ueba/tls/tls.crt"
    assert env["UEBA_TLS_KEY_FILE"] == env["UEBA_TLS_CLIENT_KEY_FILE"] == "/etc/ueba/tls/tls.key"
    assert env["UEBA_TLS_CA_FILE"] == "/etc/ueba/tls/ca.crt" and "UEBA_TLS_CLIENT_CA_FILE" not in env
    assert console["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTPS"}
    for d in deployments.values():
        spec = d["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["UEBA_TLS_CERT_FILE"] == "/etc/ueba/tls/tls.crt"
        assert env["UEBA_TLS_KEY_FILE"] == "/etc/ueba/tls/tls.key"
        assert env["UEBA_TLS_CLIENT_CA_FILE"] == "/etc/ueba/tls/ca.crt"
        assert env["UEBA_HEALTH_LISTEN"] == "0.0.0.0:50052"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == "ueba-tls"
    ingest = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "ueba-ingest")
    env = {e["name"]: e.get("value") for e in ingest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["UEBA_GEOIP_DATABASE"] == "/usr/share/GeoIP/GeoLite2-City.mmdb"


def test_settings_reach_the_config_maps():
    docs = objects(helm_template(sets=("scorer.settings.UEBA_SCORING_SCHEDULE=03:00", "config.tenant=acme")))
    config = {cm["metadata"]["name"]: cm["data"] for cm in by_kind(docs, "ConfigMap")}
    assert config["ueba-scorer"]["UEBA_SCORING_SCHEDULE"] == "03:00"
    assert {c["UEBA_TENANT"] for c in config.values()} == {"acme"}


def test_every_configured_variable_is_one_its_service_reads():
    """A misspelt or another service's variable would reach the pod and be ignored there."""
    from services.ingest.settings import IngestSettings
    from services.profiles.settings import ProfilesSettings
    from services.query.settings import QuerySettings
    from services.delivery.settings import DeliverySettings
    from services.scorer.settings import ScorerSettings
    from ueba.settings import describe

    classes = {"ingest": IngestSettings, "profiles": ProfilesSettings, "scorer": ScorerSettings, "query": QuerySettings,
               "delivery": DeliverySettings}
    config = {cm["metadata"]["name"]: cm["data"] for cm in by_kind(objects(helm_template()), "ConfigMap")}
    for service, cls in classes.items():
        assert set(config[f"ueba-{service}"]) <= {env for env, _, _ in describe(cls)}, service
    assert config["ueba-scorer"]["UEBA_SCORE_RETENTION_DAYS"] == str(ScorerSettings.score_retention_days)


def test_query_reads_a_replica_from_an_existing_secret():
    docs = objects(helm_template(sets=("query.readReplica.existingSecret=replica-db",)))
    for _, _, c in containers(docs):
        refs = [e["valueFrom"]["secretKeyRef"] for e in c["env"] if e["name"] == "UEBA_QUERY_READ_DATABASE_URL"]
        assert refs == ([{"name": "replica-db", "key": "UEBA_QUERY_READ_DATABASE_URL"}] if c["name"] == "query" else []), c["name"]


def test_notes_tell_how_to_reach_the_query_api(tmp_path):
    # helm renders NOTES.txt only on install, which needs a cluster: render it
    # through helm's own tpl in a copy of the chart instead.
    chart = tmp_path / "ueba"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "notes-rendered.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    result = run([tool("helm"), "template", "ueba", chart, "--namespace", "sec", "-f", values_file("minimal"),
                  "--show-only", "templates/notes-rendered.yaml"])
    assert result.returncode == 0, result.stderr
    notes = yaml.safe_load(result.stdout)["data"]["notes"]
    assert "kubectl -n sec port-forward svc/ueba-query 50054:50051" in notes
    assert "grpcurl -plaintext localhost:50054 list ueba.v1.QueryService" in notes
    assert "ueba summary --address localhost:50054" in notes
    assert "helm test ueba -n sec --logs" in notes
    assert "can open 481 Postgres connections" in notes
