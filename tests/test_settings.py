import pytest

from ueba.settings import BaseSettings, SettingsError


def test_defaults_are_valid():
    s = BaseSettings.from_env({})
    assert s.tenant == "default" and s.database_url == ""


@pytest.mark.parametrize(
    "var,value",
    [
        ("UEBA_LISTEN", "nonsense"),
        ("UEBA_METRICS_PORT", "abc"),
        ("UEBA_LOG_LEVEL", "LOUD"),
        ("DATABASE_URL", "mysql://x"),
        ("UEBA_DRAIN_SECONDS", "-1"),
    ],
)
def test_bad_values_name_the_variable(var, value):
    with pytest.raises(SettingsError, match=var):
        BaseSettings.from_env({var: value})
