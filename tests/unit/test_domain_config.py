import pytest

from common.config import ConfigError, PipelineConfig, Settings, parse_config_value, setting
from common.domain import InvalidInput, validate_account_id, validate_network, validate_page_size
from tests.support import random_account

pytestmark = pytest.mark.unit

GENESIS = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"


def test_account_ids_are_checked_by_checksum():
    assert validate_account_id(GENESIS) == GENESIS
    bad_checksum = GENESIS[:-1] + ("A" if GENESIS[-1] != "A" else "B")
    for bad in (bad_checksum, GENESIS.lower(), GENESIS[:-1], "", None, 42, "S" + GENESIS[1:]):
        with pytest.raises(InvalidInput) as info:
            validate_account_id(bad)
        assert info.value.code == "invalid_account" and info.value.field == "account"


def test_account_id_check_agrees_with_stellar_sdk_on_every_mutation():
    import random

    from stellar_sdk import StrKey

    from common.domain import is_valid_account_id

    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abz0189=\n "
    cases = [GENESIS, GENESIS + "\n", "G" * 56, "GA" * 28, "S" + GENESIS[1:], "M" + GENESIS[1:]]
    for _ in range(300):
        good = random_account()
        cases.append(good)
        for _ in range(5):
            i = rng.randrange(56)
            cases.append(good[:i] + rng.choice(alphabet) + good[i + 1:])
        cases.append(good[:-1])
        cases.append(good + "A")
    for case in cases:
        assert is_valid_account_id(case) == StrKey.is_valid_ed25519_public_key(case), case
    for not_text in (None, 42, b"G" * 56, ["G"]):
        assert is_valid_account_id(not_text) is False


def test_network_and_page_size():
    assert validate_network("testnet") == "testnet"
    with pytest.raises(InvalidInput, match="public, testnet"):
        validate_network("mainnet")
    assert validate_page_size(1000) == 1000
    for bad in (0, 1001, -1, "10", True, 1.5):
        with pytest.raises(InvalidInput):
            validate_page_size(bad)


def test_setting_rule_explicit_then_env_then_default_then_error():
    env = {"X_VAR": "from-env"}
    assert setting("X_VAR", "explicit", env=env) == "explicit"
    assert setting("X_VAR", env=env) == "from-env"
    assert setting("Y_VAR", default="d", env=env) == "d"
    with pytest.raises(ConfigError, match="Y_VAR"):
        setting("Y_VAR", env=env)


def test_settings_from_env_validates_backends_and_names_the_variable():
    s = Settings.from_env(env={"STELLARMAP_STORE": "cassandra", "CASSANDRA_CONTACT_POINTS": "10.0.0.1, 10.0.0.2", "CASSANDRA_PORT": "9043"})
    assert s.store_backend == "cassandra" and s.cassandra_contact_points == ("10.0.0.1", "10.0.0.2") and s.cassandra_port == 9043
    assert Settings.from_env(env={}).horizon_urls["public"] == "https://horizon.stellar.org"
    with pytest.raises(ConfigError, match="STELLARMAP_STORE"):
        Settings.from_env(env={"STELLARMAP_STORE": "postgres"})
    with pytest.raises(ConfigError, match="CASSANDRA_PORT"):
        Settings.from_env(env={"CASSANDRA_PORT": "ninety"})
    with pytest.raises(ConfigError, match="CLOUD_TASKS_PROJECT"):
        Settings.from_env(env={}).require("CLOUD_TASKS_PROJECT", env={})


def test_pipeline_config_defaults_and_validation():
    cfg = PipelineConfig.from_stored({"cost_limit_usd": "1.5", "hva_thresholds": [100, 10]})
    assert cfg.decimal("cost_limit_usd") == 1.5 and cfg.hva_thresholds == [10, 100]
    assert cfg["pipeline_mode"] == "BIGQUERY_WITH_API_FALLBACK"
    assert PipelineConfig.from_stored({})["hva_thresholds"] == [10_000, 50_000, 100_000, 500_000, 750_000, 1_000_000]
    for key, value in (("cost_limit_usd", "-1"), ("cost_limit_usd", "abc"), ("max_retries", "x"), ("hva_thresholds", []), ("nope", 1)):
        with pytest.raises(ValueError):
            parse_config_value(key, value)


def test_random_accounts_are_valid():
    assert validate_account_id(random_account())
