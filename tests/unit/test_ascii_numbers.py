"""Numbers are written with the ASCII digits 0-9, wherever we are given them.

str.isdigit() takes '²' and '①' (which int() then refuses: an unexpected ValueError), and int(),
float() and Decimal() read Arabic-Indic, fullwidth or mathematical digits as numbers. Each place that
parses a number from a request, a setting or a run-time config value refuses them with its own error."""
import pytest

from common.config import ConfigError, Settings, bounded_number, int_setting, parse_config_value
from common.handlers.api_fallback import Checkpoint
from common.handlers.stats import parse_since
from common.queue.port import task_name

pytestmark = pytest.mark.unit
OTHER_DIGITS = ["²", "①", "١٢", "۱۲", "１２", "𝟙𝟚", "1²", "߁", "൧൨"]
ACCOUNT = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"


@pytest.mark.parametrize("text", OTHER_DIGITS)
def test_settings_refuse_other_digits_and_name_the_variable(text):
    with pytest.raises(ConfigError, match="STELLAR_TOML_RATE"):
        bounded_number("STELLAR_TOML_RATE", text, 0, 10**9)
    with pytest.raises(ConfigError, match="CASSANDRA_PORT"):
        int_setting("CASSANDRA_PORT", env={"CASSANDRA_PORT": text})


def test_settings_still_take_ascii_numbers_and_numbers():
    assert bounded_number("X", " 2.5 ", 0, 10) == 2.5 and bounded_number("X", 3, 0, 10, int) == 3
    assert int_setting("CASSANDRA_PORT", env={"CASSANDRA_PORT": "9043"}) == 9043
    assert Settings.from_env(env={"CASSANDRA_PORT": "9044"}).cassandra_port == 9044


@pytest.mark.parametrize("key, value", [
    *[("cache_ttl_hours", d) for d in OTHER_DIGITS],
    *[("cost_limit_usd", d) for d in OTHER_DIGITS],
    ("cache_ttl_hours", 6.5),  # once cut to 6 without a word
    ("cache_ttl_hours", True),  # a bool is an int to Python, not to an operator
    ("cache_ttl_hours", "6.5"),
    ("cost_limit_usd", "NaN"),
    ("cost_limit_usd", "Infinity"),  # an unlimited BigQuery budget by typo
    ("cost_limit_usd", float("inf")),
    ("cost_limit_usd", True),
    ("hva_thresholds", [True, 10_000]),
    ("hva_thresholds", "[1e999]"),
])
def test_pipeline_config_refuses_other_digits_fractions_bools_and_infinities(key, value):
    with pytest.raises(ValueError) as info:
        parse_config_value(key, value)
    assert key in str(info.value)


@pytest.mark.parametrize("key, value, expected", [
    ("cache_ttl_hours", "6", 6), ("cache_ttl_hours", 6, 6), ("cache_ttl_hours", 1e5, 100_000), ("cache_ttl_hours", " 7 ", 7),
    ("cost_limit_usd", "0.71", "0.71"), ("cost_limit_usd", 2, "2"), ("hva_thresholds", "[50000, 10000]", [10_000, 50_000]),
])
def test_pipeline_config_still_takes_what_it_took(key, value, expected):
    assert parse_config_value(key, value) == expected


@pytest.mark.parametrize("text", ["٢٠٢٦-04-01T00:00:00Z", "2026-04-0١T00:00:00Z", "２０２６-04-01T00:00:00Z", "2026-04-01T00:00:00+0²:00"])
def test_since_in_other_digits_is_invalid_since(text):
    from common.domain import InvalidInput

    with pytest.raises(InvalidInput) as info:
        parse_since(text)
    assert info.value.code == "invalid_since"


@pytest.mark.parametrize("cursor", ["horizon:v1:123:²:0", "horizon:v1:١٢٣:4:0", "horizon:v1:123:４:1"])
def test_a_checkpoint_in_other_digits_is_no_checkpoint(cursor):
    assert Checkpoint.decode(cursor) is None  # start over, never a ValueError (a 503 and a retry, every time)
    assert Checkpoint.decode("horizon:v1:123:4:1") == Checkpoint("123", 4, True)


def test_task_names_of_other_digit_generations_do_not_collide():
    names = {task_name("public", ACCOUNT, "lineage", g) for g in ("١٢", "٣٤", "12", "۱۲")}
    assert len(names) == 4
    assert task_name("public", ACCOUNT, "lineage", 12) == task_name("public", ACCOUNT, "lineage", "12")
