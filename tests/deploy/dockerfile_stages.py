"""The Dockerfile read by the official BuildKit parser (the `dockerfile` package): stages, ENV, commands."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import sys

import pytest

from .tools import DEPLOY

dockerfile = pytest.importorskip(
    "dockerfile", reason=f"the Dockerfile parser is missing: install the deployment tools with `{sys.executable} deploy/tools/install.py`"
)

DOCKERFILE = DEPLOY / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    commands: list = field(default_factory=list)

    def all(self, cmd: str) -> list:
        return [c for c in self.commands if c.cmd == cmd]


def stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current = None
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            value = list(command.value)
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else f"stage{len(found)}"
            current = found[name] = Stage(name, value[0])
        elif current is not None:
            current.commands.append(command)
    return found


def chain(target: str) -> list[Stage]:
    """The stages a target is built from, base first."""
    all_stages = stages()
    path = [all_stages[target]]
    while path[0].base in all_stages:
        path.insert(0, all_stages[path[0].base])
    return path


def _unquote(value: str) -> str:
    return shlex.split(value)[0] if value[:1] in ("'", '"') else value


def image_env(target: str) -> dict[str, str]:
    """ENV of a target as the image carries it (inherited from its parent stages)."""
    env: dict[str, str] = {}
    for stage in chain(target):
        for command in stage.all("ENV"):
            values = list(command.value)
            for key, value in zip(values[::2], values[1::2]):
                env[key] = _unquote(value)
    return env


def image_command(target: str) -> list[str]:
    """ENTRYPOINT + CMD (exec form) of a target, as a container runs it."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    for stage in chain(target):
        for command in stage.commands:
            if command.cmd == "ENTRYPOINT":
                assert command.json, "ENTRYPOINT must use the exec (JSON) form"
                entrypoint, cmd = list(command.value), []
            elif command.cmd == "CMD":
                assert command.json, "CMD must use the exec (JSON) form"
                cmd = list(command.value)
    return entrypoint + cmd


def exposed(target: str) -> set[int]:
    return {int(port.split("/")[0]) for stage in chain(target) for c in stage.all("EXPOSE") for port in c.value}


def user(target: str) -> str:
    users = [c.value[0] for stage in chain(target) for c in stage.all("USER")]
    return users[-1] if users else ""
