"""The command line's one output layer: tables that fit, safe text and CSV, typed JSON."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ueba.cli import output
from ueba.cli.pictures import heat_row, sparkline
from ueba.v1 import common_pb2, query_pb2


def test_formula_cells_get_a_leading_quote_and_numbers_stay_numbers():
    for text in ('=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "=1+2", "-2+3", "@SUM(1)", "\tx", "\rx"):
        assert output.csv_cell(text) == "'" + text
    assert output.csv_cell(-3) == -3 and output.csv_cell(2.5) == 2.5 and output.csv_cell("alice") == "alice"
    out = io.StringIO()
    output.csv_rows([["=1+2", -1, "a\x1b[31mb"]], ["=header", "n", "text"], out)
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["'=header", "n", "text"], ["'=1+2", "-1", "a\\x1b[31mb"]]


def test_control_characters_are_shown_never_sent():
    hostile = "a\x1b[2Jb\x1b]8;;http://evil\x07c\x9b31md\u202eexe\x00e\nf\tg"
    shown = output.printable(hostile)
    assert shown == "a\\x1b[2Jb\\x1b]8;;http://evil\\x07c\\x9b31md\\u202eexe\\x00e f g"
    assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f for ch in shown)


def test_widest_columns_shrink_first_and_fixed_ones_last():
    assert output.fit([10, 40, 20], 60) == [10, 26, 20]
    assert output.fit([10, 40, 36], 60, fixed=[2]) == [10, 10, 36]
    out = io.StringIO()
    output.table([["x" * 30, "a sentence of several words here", "f" * 36]], ["a", "words", "id"], out, width=60,
                 fixed=["id"], optional=["a"])
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 60 for line in lines) and "f" * 36 in lines[1] and "x" not in lines[1]
    assert "a sentence of several…" in lines[1]  # cut between words


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(st.one_of(st.text(max_size=80), st.integers(), st.floats(allow_nan=False)), min_size=6,
                              max_size=6), max_size=5),
       width=st.sampled_from([20, 80, 120]))
def test_any_table_fits_its_width_and_prints_nothing_raw(rows, width):
    out = io.StringIO()
    output.table(rows, ["time", "user", "risk", "level", "description", "id"], out, width=width,
                 fixed=["time", "id"], optional=["level"])
    for line in out.getvalue().splitlines():
        assert output.display_width(line) <= width
        assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f for ch in line)


def test_json_is_typed_snake_case_with_every_field():
    s = query_pb2.Summary(total_anomalies=154, riskiest_users=[common_pb2.UserRisk(user="u1", risk=80,
                                                                                     risk_level=common_pb2.RISK_LEVEL_HIGH)])
    body = output.to_data(s)
    assert body["total_anomalies"] == 154 and body["new_anomalies"] == 0 and body["by_status"] == []
    assert body["riskiest_users"][0]["risk_level"] == "high" and body["range"] is None
    card = query_pb2.ModelCard(model="authentication", features=[query_pb2.FeatureValue(name="failures", share=0.3)])
    assert output.to_data(card)["features"][0]["share"] == 0.3
    paged = output.page("anomalies", [common_pb2.Anomaly(id="a")], "", 1)
    assert json.loads(json.dumps(output.to_data(paged)))["anomalies"][0]["status"] == ""


def test_pictures():
    assert sparkline([0, 50, 100]) == "▁▅█" and len(sparkline([3.0] * 14)) == 14
    assert heat_row([0.0] * 3 + [95.0] + [30.0], 90.0, io.StringIO()) == "   █▒"  # no colour off a terminal
