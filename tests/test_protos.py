"""Generated stubs are current: regenerating from protos/ changes nothing."""

import filecmp

from ueba import protos


def test_stubs_match_protos(tmp_path):
    protos.generate(tmp_path)
    generated = sorted(p.name for p in (tmp_path / "ueba" / "v1").glob("*_pb2*.py*"))
    assert generated, "protoc produced nothing"
    here = protos.ROOT / "ueba" / "v1"
    stale = [name for name in generated if not (here / name).exists() or not filecmp.cmp(tmp_path / "ueba" / "v1" / name, here / name, shallow=False)]
    assert stale == [], f"stale stubs, run `make protos`: {stale}"


def test_enums_have_unspecified_zero():
    from ueba.v1 import common_pb2, profiles_pb2, query_pb2, scorer_pb2

    for module in (common_pb2, profiles_pb2, query_pb2, scorer_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.name
