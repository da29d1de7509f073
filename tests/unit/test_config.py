"""Configuration: every contract variable is read, validated, and named in its error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.config import VARIABLES, ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_VARIABLES = {
    "PRESENCE_SOURCE",
    "PRESENCE_TIMEOUT_SECONDS",
    "AGORA_NCS_SECRET",
    "DATABASE_URL",
    "EVENT_SOURCE",
    "RECONCILE_INTERVAL_SECONDS",
    "SUPABASE_URL",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_ANON_KEY",
    "SUPABASE_JWT_SECRET",
    "AUTH_CHECK_SESSION",
    "RING_TIMEOUT_SECONDS",
    "PRUNE_BRAKE_MIN",
    "PRUNE_BRAKE_RATIO",
    "MAX_CALL_SECONDS",
    "CALLS_PER_MINUTE_PER_CALLER",
    "CALLER_NAME_KEY",
    "APNS_KEY_FILE",
    "APNS_KEY_ID",
    "APNS_TEAM_ID",
    "APNS_BUNDLE_ID",
    "APNS_USE_SANDBOX",
    "APNS_ENDPOINT",
    "APNS_CA_FILE",
    "FCM_SERVICE_ACCOUNT_FILE",
    "FCM_ENDPOINT",
    "PUSH_DRY_RUN",
    "AGORA_APP_ID",
    "AGORA_APP_CERT",
    "AGORA_TOKEN_VERSION",
    "TOKEN_TTL_SECONDS",
    "RATE_LIMIT_PER_USER",
    "RATE_LIMIT_PER_IP",
    "TRUSTED_PROXY_HOPS",
    "REDIS_URL",
    "HOST",
    "PORT",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "METRICS_PORT",
    "MQTT_URL",
    "MQTT_TOPIC_PREFIX",
    "CORS_ALLOW_ORIGINS",
    "LOG_FORMAT",
    "LOG_LEVEL",
}


def test_defaults_match_the_contract() -> None:
    s = Settings.from_env({})
    assert (s.event_source, s.reconcile_interval, s.ring_timeout, s.max_call_seconds) == (
        "postgres",
        5,
        45,
        14400,
    )
    assert (s.prune_brake_min, s.prune_brake_ratio, s.calls_per_minute_per_caller) == (50, 0.8, 10)
    assert (s.agora_token_version, s.token_ttl_seconds, s.rate_limit_per_user) == (
        "007",
        300,
        "30/minute",
    )
    assert (s.rate_limit_per_ip, s.trusted_proxy_hops, s.host, s.port, s.metrics_port) == (
        "120/minute",
        0,
        "0.0.0.0",
        8080,
        9100,
    )
    assert (s.mqtt_topic_prefix, s.cors_allow_origins, s.log_level) == ("v1", (), "info")
    assert s.fcm_endpoint == "https://fcm.googleapis.com" and s.auth_check_session
    assert not s.ring_timeout_set and s.push_dry_run is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RING_TIMEOUT_SECONDS", "56"),
        ("RING_TIMEOUT_SECONDS", "0"),
        ("RING_TIMEOUT_SECONDS", "abc"),
        ("RECONCILE_INTERVAL_SECONDS", "3601"),
        ("TOKEN_TTL_SECONDS", "59"),
        ("TOKEN_TTL_SECONDS", "3601"),
        ("EVENT_SOURCE", "kafka"),
        ("AGORA_APP_ID", "xyz"),
        ("AGORA_APP_CERT", "0" * 31),
        ("AGORA_TOKEN_VERSION", "005"),
        ("RATE_LIMIT_PER_USER", "lots"),
        ("PUSH_DRY_RUN", "maybe"),
        ("MQTT_URL", "http://x"),
        ("APNS_ENDPOINT", "no-port"),
        ("FCM_ENDPOINT", "ftp://x"),
        ("LOG_FORMAT", "xml"),
        ("CORS_ALLOW_ORIGINS", "*"),
        ("PRUNE_BRAKE_RATIO", "1.5"),
        ("APNS_KEY_FILE", "/nope"),
        ("PORT", "70000"),
        ("TRUSTED_PROXY_HOPS", "-1"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_secret_values_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AGORA_APP_CERT": "not-hex-secret-value"})
    assert "not-hex-secret-value" not in str(caught.value)
    assert "secret" not in repr(Settings.from_env({"SUPABASE_JWT_SECRET": "secret"}))


def test_pairs_and_requirements() -> None:
    with pytest.raises(ConfigError, match="SUPABASE_URL"):
        Settings.from_env({"EVENT_SOURCE": "supabase"})
    with pytest.raises(ConfigError, match="TLS_KEY_FILE"):
        Settings.from_env({"TLS_CERT_FILE": __file__})
    with pytest.raises(ConfigError, match="PUSH_DRY_RUN=0"):
        Settings.from_env({"PUSH_DRY_RUN": "0"}).require_push_credentials()
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings.from_env({}).require_database()
    assert Settings.from_env({"RING_TIMEOUT_SECONDS": "3"}).ring_timeout_set


def test_env_example_documents_every_contract_variable() -> None:
    text = (ROOT / "deploy" / "env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    assert documented >= CONTRACT_VARIABLES, CONTRACT_VARIABLES - documented
    source = (ROOT / "orchestrator" / "config.py").read_text()
    for name in CONTRACT_VARIABLES:  # each one is actually read by Settings.from_env
        assert re.search(rf'env\.\w+\(\s*"{name}"', source), name
    assert set(VARIABLES) >= CONTRACT_VARIABLES
    assert set(VARIABLES) <= documented | {"ORCHESTRATOR_MIGRATIONS_DIR"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "none"),
        ("none", "none"),
        ("agora", "agora"),
        ("heartbeat", "heartbeat"),
        ("agora,heartbeat", "agora,heartbeat"),
        (" heartbeat , agora ", "agora,heartbeat"),
    ],
)
def test_presence_source_is_validated_and_canonical(value: str | None, expected: str) -> None:
    env = {} if value is None else {"PRESENCE_SOURCE": value}
    settings = Settings.from_env(env)
    assert settings.presence_source == expected
    assert settings.presence_source_set is (value is not None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRESENCE_SOURCE", "ncs"),
        ("PRESENCE_SOURCE", "none,agora"),
        ("PRESENCE_TIMEOUT_SECONDS", "4"),
        ("PRESENCE_TIMEOUT_SECONDS", "301"),
        ("PRESENCE_TIMEOUT_SECONDS", "abc"),
    ],
)
def test_presence_variables_refuse_bad_values(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_ncs_secret_never_in_repr() -> None:
    settings = Settings.from_env({"AGORA_NCS_SECRET": "top-secret-ncs"})
    assert settings.agora_ncs_secret == "top-secret-ncs"
    assert "top-secret-ncs" not in repr(settings)


def test_abuse_limit_variables() -> None:
    """MAX_DEVICES_PER_USER (1-100, default 10) and CALLEE_TOKEN_WHILE_RINGING (default off)."""
    default = Settings.from_env({})
    assert (default.max_devices_per_user, default.max_devices_set) == (10, False)
    assert default.callee_token_while_ringing is False
    custom = Settings.from_env({"MAX_DEVICES_PER_USER": "3", "CALLEE_TOKEN_WHILE_RINGING": "1"})
    assert (custom.max_devices_per_user, custom.max_devices_set) == (3, True)
    assert custom.callee_token_while_ringing is True
    for bad in ("0", "101", "ten"):
        with pytest.raises(ConfigError, match="MAX_DEVICES_PER_USER"):
            Settings.from_env({"MAX_DEVICES_PER_USER": bad})
    assert {"MAX_DEVICES_PER_USER", "CALLEE_TOKEN_WHILE_RINGING"} <= set(VARIABLES)
