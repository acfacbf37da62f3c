"""The container images: hadolint, and what the Dockerfile promises the chart."""

from __future__ import annotations

import re


from .dockerfile_stages import DOCKERFILE, chain, exposed, image_command, image_env, stages, user
from .tools import CHART, SERVICES, run, tool, yaml

TARGETS = (*SERVICES, "console", "cli")


def test_hadolint_finds_nothing():
    result = run([tool("hadolint"), "--failure-threshold", "style", "--no-color", DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_runs_its_rules(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\n")
    result = run([tool("hadolint"), "--no-color", bad])
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_every_target_exists_and_runs_as_the_local_run_does():
    all_stages = stages()
    for name in SERVICES:
        assert name in all_stages, f"no {name} target"
        assert image_command(name) == ["python", "-m", f"services.{name}"]
    assert image_command("console") == ["python", "-m", "services.console"]
    assert image_command("cli")[0] == "ueba"


def test_bases_are_pinned_slim_python_311():
    external = {s.base for s in stages().values() if s.base not in stages()}
    assert external, "no base image"
    for base in external:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", base), f"{base}: pin a slim python 3.11 patch tag"


def test_runtime_is_non_root_and_has_no_build_tools():
    for target in TARGETS:
        uid = user(target).split(":")[0]
        assert uid.isdigit() and int(uid) > 0, f"{target}: USER {uid!r} (numeric, so runAsNonRoot can verify it)"
        runtime = chain(target)
        assert runtime[0].name == "runtime", f"{target} must build on the runtime stage"
        for stage in runtime:
            for command in stage.all("RUN"):
                text = " ".join(command.value)
                assert not re.search(r"apt-get|apk |pip install|gcc|build-essential", text), f"{target}: {text}"
            for command in stage.all("COPY"):
                flags = " ".join(command.flags)
                assert "--from=build" in flags and list(command.value) == ["/opt/ueba", "/opt/ueba"], command.original


def test_stubs_are_generated_in_the_build():
    build = stages()["build"]
    runs = " ".join(" ".join(c.value) for c in build.all("RUN"))
    assert "python -m ueba.protos" in runs
    # The console's scripts are fetched before the install, so the wheel carries them.
    assert runs.index("python -m services.console.assets") < runs.index("pip install --no-deps .")
    # Stubs in a work tree are never copied in: the build context excludes them.
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "ueba/v1/*_pb2*" in ignore


def test_images_match_the_chart():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for target in SERVICES:
        env = image_env(target)
        assert env["UEBA_LISTEN"] == "0.0.0.0:50051" and env["UEBA_METRICS_PORT"] == "9090"
        assert {50051, 9090} <= exposed(target)
        assert values[target]["image"]["repository"] == f"ueba-{target}"
        assert float(env["UEBA_DRAIN_SECONDS"]) == values["config"]["drainSeconds"]
    assert image_env("ingest")["UEBA_OTLP_LISTEN"] == "0.0.0.0:4317" and 4317 in exposed("ingest")
    assert values["migrations"]["image"]["repository"] == "ueba-cli"
    assert image_env("console")["UEBA_LISTEN"] == "0.0.0.0:8080" and {8080, 9090} <= exposed("console")
    assert values["console"]["image"]["repository"] == "ueba-console" and values["console"]["port"] == 8080
    uid = int(user("query").split(":")[0])
    assert values["securityContext"]["runAsUser"] == uid and values["podSecurityContext"]["runAsUser"] == uid
    # HOME and the embedded server's folder point at /tmp, the only writable path.
    assert image_env("query")["HOME"].startswith("/tmp") and image_env("query")["UEBA_DATA_DIR"].startswith("/tmp")
