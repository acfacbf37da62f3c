"""Every query docs/query-language.md shows as an example parses, and the errors it quotes are real."""

from __future__ import annotations

import re

import pytest

from ueba.errors import InvalidArgument
from services.query.querystring import parse
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "query-language.md").read_text()


def _block_after(heading: str) -> list[str]:
    section = DOC.split(heading, 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("query", _block_after("## Examples"))
def test_documented_examples_parse(query):
    parsed = parse(query)
    assert parsed.clauses or parsed.texts


@pytest.mark.parametrize("line", _block_after("## Errors"))
def test_documented_errors_are_what_the_parser_says(line):
    term = re.search(r"in '([^']+)'", line).group(1)
    with pytest.raises(InvalidArgument) as err:
        parse(term)
    shown = line.split(" ...")[0].rstrip(")")
    assert str(err.value).startswith(shown.split(" (")[0]) and (" ..." in line or str(err.value) == line)
