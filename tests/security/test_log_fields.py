"""No log call passes a field that logging reserves: `extra={"created": ...}` raises
KeyError inside the call, but only where INFO is enabled (the services, not the tests),
which once stopped the profiles evaluator at every new tenant."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESERVED = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {"message", "asctime"}


def test_no_log_extra_overwrites_a_log_record_attribute():
    found = []
    for folder in ("services", "ueba", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    for kw in node.keywords:
                        if kw.arg == "extra" and isinstance(kw.value, ast.Dict):
                            keys = [k.value for k in kw.value.keys if isinstance(k, ast.Constant)]
                            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {k}" for k in keys if k in RESERVED]
    assert found == []
