"""A service never imports another service, the command line, the simulator, benchmarks, tests or the harness:
it calls other services' APIs, and shares only what lives in ueba/ (outside cli/ and simulator/)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
FORBIDDEN_FOR_ALL = ("ueba.cli", "ueba.simulator", "bench", "tests", "harness")


def imported_modules(source: str, package: str) -> set[str]:
    """Every module a module of `package` imports, at top level or inside functions, relative imports resolved."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(service: str) -> list[str]:
    forbidden = [*FORBIDDEN_FOR_ALL, *(f"services.{other}" for other in SERVICES if other != service)]
    out = []
    for path in sorted((ROOT / "services" / service).rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).parts[:-1])
        for module in sorted(imported_modules(path.read_text(), package)):
            if any(is_under(module, prefix) for prefix in forbidden):
                out.append(f"{path.relative_to(ROOT)} imports {module}")
    return out


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_nor_the_cli_or_simulator(service):
    assert violations(service) == []


def test_the_walk_sees_imports_inside_functions_and_relative_ones():
    source = "def f():\n    from services.query import server\n    import ueba.simulator.world\nfrom ..scorer import runs\n"
    found = imported_modules(source, "services.ingest")
    assert {"services.query.server", "ueba.simulator.world", "services.scorer.runs"} <= found


def test_the_harness_imports_neither_tests_nor_bench():
    """bench is installed and tests are not: what both use lives in harness/, which needs neither."""
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).parts[:-1])
        found += [f"{path.name} imports {m}" for m in imported_modules(path.read_text(), package)
                  if is_under(m, "tests") or is_under(m, "bench")]
    assert found == []


def test_bench_imports_tests_nowhere():
    found = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).parts[:-1])
        found += [f"{path.relative_to(ROOT)} imports {m}" for m in imported_modules(path.read_text(), package)
                  if is_under(m, "tests")]
    assert found == []
