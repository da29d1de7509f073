"""All configuration, read once from the environment and validated at start (12-factor)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.config_parse import ConfigError, Env

__all__ = ["VARIABLES", "ConfigError", "Settings"]

# Every variable the processes read (the contract's and our tuning ones), for tools that must
# build a clean environment (the benchmark's worker processes).
VARIABLES: tuple[str, ...] = (
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
    "MAX_DEVICES_PER_USER",
    "CALLEE_TOKEN_WHILE_RINGING",
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
    "WORKER_ID",
    "WORKER_LEASE_SECONDS",
    "WAKE_SLOTS",
    "PUSH_TIMEOUT_SECONDS",
    "PUSH_MAX_ATTEMPTS",
    "PUSH_RETRY_BASE_SECONDS",
    "PUSH_CONCURRENCY",
    "PRUNE_QUARANTINE_SECONDS",
    "JOB_MAX_ATTEMPTS",
    "SHUTDOWN_GRACE_SECONDS",
    "DB_POOL_SIZE",
    "ORCHESTRATOR_MIGRATIONS_DIR",
    "PRESENCE_SOURCE",
    "PRESENCE_TIMEOUT_SECONDS",
    "AGORA_NCS_SECRET",
)
PRESENCE_SOURCES = ("none", "agora", "heartbeat", "agora,heartbeat")


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    event_source: str = "postgres"
    reconcile_interval: float = 5.0
    supabase_url: str | None = None
    supabase_service_role_key: str | None = field(default=None, repr=False)
    supabase_anon_key: str | None = field(default=None, repr=False)
    supabase_jwt_secret: str | None = field(default=None, repr=False)
    auth_check_session: bool = True
    ring_timeout: int = 45
    ring_timeout_set: bool = False  # only an explicit variable overwrites the database's value
    prune_brake_min: int = 50
    prune_brake_ratio: float = 0.8
    max_call_seconds: int = 14400
    max_call_seconds_set: bool = False
    calls_per_minute_per_caller: int = 10
    calls_per_minute_set: bool = False
    caller_name_key: str = "full_name"
    max_devices_per_user: int = 10
    max_devices_set: bool = False
    callee_token_while_ringing: bool = False
    apns_key_file: str | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_bundle_id: str | None = None
    apns_use_sandbox: bool = False
    apns_endpoint: tuple[str, int] | None = None
    apns_ca_file: str | None = None
    fcm_service_account_file: str | None = None
    fcm_endpoint: str = "https://fcm.googleapis.com"
    push_dry_run: bool | None = None  # None: dry-run exactly the platforms without credentials
    agora_app_id: str | None = None
    agora_app_cert: str | None = field(default=None, repr=False)
    agora_token_version: str = "007"
    token_ttl_seconds: int = 300
    rate_limit_per_user: str = "30/minute"
    rate_limit_per_ip: str = "120/minute"
    trusted_proxy_hops: int = 0
    redis_url: str | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    metrics_port: int = 9100
    mqtt_url: str | None = field(default=None, repr=False)  # may hold a password
    mqtt_topic_prefix: str = "v1"
    cors_allow_origins: tuple[str, ...] = ()
    log_format: str = "json"
    log_level: str = "info"
    # Ours (not in the public contract): every lease, timeout and backoff is injectable.
    worker_id: str = ""
    lease_seconds: float = 5.0
    # Wake-up slots shared out between workers (the same on every worker); 0: every worker
    # sweeps every wake-up (before issue 14, kept for the bench's comparison).
    wake_slots: int = 64
    push_timeout_seconds: float = 5.0
    push_max_attempts: int = 5
    push_retry_base_seconds: float = 0.5
    push_concurrency: int = 64
    prune_quarantine_seconds: float = 30.0
    job_max_attempts: int = 3
    shutdown_grace_seconds: float = 10.0
    db_pool_size: int = 8
    # Presence (second release): who tells the server that a participant is still in a call.
    presence_source: str = "none"
    presence_source_set: bool = False  # like RING_TIMEOUT_SECONDS: only explicit values count
    presence_timeout: int = 30
    presence_timeout_set: bool = False
    agora_ncs_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(os.environ if environ is None else environ)
        tty = sys.stderr.isatty()
        settings = cls(
            database_url=env.text("DATABASE_URL"),
            event_source=env.choice("EVENT_SOURCE", "postgres", ("postgres", "supabase")),
            reconcile_interval=env.number("RECONCILE_INTERVAL_SECONDS", 5, 1, 3600),
            supabase_url=env.url("SUPABASE_URL", ("https", "http")),
            supabase_service_role_key=env.text("SUPABASE_SERVICE_ROLE_KEY"),
            supabase_anon_key=env.text("SUPABASE_ANON_KEY"),
            supabase_jwt_secret=env.text("SUPABASE_JWT_SECRET"),
            auth_check_session=bool(env.flag("AUTH_CHECK_SESSION", True)),
            ring_timeout=env.integer("RING_TIMEOUT_SECONDS", 45, 1, 55),
            ring_timeout_set=env.is_set("RING_TIMEOUT_SECONDS"),
            prune_brake_min=env.integer("PRUNE_BRAKE_MIN", 50, 1, 1_000_000),
            prune_brake_ratio=env.number("PRUNE_BRAKE_RATIO", 0.8, 0.0, 1.0),
            max_call_seconds=env.integer("MAX_CALL_SECONDS", 14400, 1, 7 * 24 * 3600),
            max_call_seconds_set=env.is_set("MAX_CALL_SECONDS"),
            calls_per_minute_per_caller=env.integer("CALLS_PER_MINUTE_PER_CALLER", 10, 1, 100_000),
            calls_per_minute_set=env.is_set("CALLS_PER_MINUTE_PER_CALLER"),
            caller_name_key=env.text("CALLER_NAME_KEY", "full_name") or "full_name",
            max_devices_per_user=env.integer("MAX_DEVICES_PER_USER", 10, 1, 100),
            max_devices_set=env.is_set("MAX_DEVICES_PER_USER"),
            callee_token_while_ringing=bool(env.flag("CALLEE_TOKEN_WHILE_RINGING", False)),
            apns_key_file=env.text("APNS_KEY_FILE"),
            apns_key_id=env.text("APNS_KEY_ID"),
            apns_team_id=env.text("APNS_TEAM_ID"),
            apns_bundle_id=env.text("APNS_BUNDLE_ID"),
            apns_use_sandbox=bool(env.flag("APNS_USE_SANDBOX", False)),
            apns_endpoint=env.host_port("APNS_ENDPOINT"),
            apns_ca_file=env.text("APNS_CA_FILE"),
            fcm_service_account_file=env.text("FCM_SERVICE_ACCOUNT_FILE"),
            fcm_endpoint=env.url("FCM_ENDPOINT", ("https", "http"), "https://fcm.googleapis.com")
            or "https://fcm.googleapis.com",
            push_dry_run=env.flag("PUSH_DRY_RUN", None),
            agora_app_id=env.hex32("AGORA_APP_ID"),
            agora_app_cert=env.hex32("AGORA_APP_CERT"),
            agora_token_version=env.choice("AGORA_TOKEN_VERSION", "007", ("007", "006")),
            token_ttl_seconds=env.integer("TOKEN_TTL_SECONDS", 300, 60, 3600),
            rate_limit_per_user=env.rate("RATE_LIMIT_PER_USER", "30/minute"),
            rate_limit_per_ip=env.rate("RATE_LIMIT_PER_IP", "120/minute"),
            trusted_proxy_hops=env.integer("TRUSTED_PROXY_HOPS", 0, 0, 10),
            redis_url=env.url("REDIS_URL", ("redis", "rediss", "unix")),
            host=env.text("HOST", "0.0.0.0") or "0.0.0.0",
            port=env.integer("PORT", 8080, 0, 65535),
            tls_cert_file=env.text("TLS_CERT_FILE"),
            tls_key_file=env.text("TLS_KEY_FILE"),
            metrics_port=env.integer("METRICS_PORT", 9100, 0, 65535),
            mqtt_url=env.url("MQTT_URL", ("mqtt", "mqtts")),
            mqtt_topic_prefix=(env.text("MQTT_TOPIC_PREFIX", "v1") or "v1").strip("/"),
            cors_allow_origins=env.csv("CORS_ALLOW_ORIGINS"),
            log_format=env.choice("LOG_FORMAT", "console" if tty else "json", ("console", "json")),
            log_level=env.choice(
                "LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")
            ),
            worker_id=env.text("WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
            lease_seconds=env.number("WORKER_LEASE_SECONDS", 5, 0.5, 300),
            wake_slots=env.integer("WAKE_SLOTS", 64, 0, 4096),
            push_timeout_seconds=env.number("PUSH_TIMEOUT_SECONDS", 5, 0.1, 60),
            push_max_attempts=env.integer("PUSH_MAX_ATTEMPTS", 5, 1, 100),
            push_retry_base_seconds=env.number("PUSH_RETRY_BASE_SECONDS", 0.5, 0.01, 60),
            push_concurrency=env.integer("PUSH_CONCURRENCY", 64, 1, 10_000),
            prune_quarantine_seconds=env.number("PRUNE_QUARANTINE_SECONDS", 30, 0, 300),
            job_max_attempts=env.integer("JOB_MAX_ATTEMPTS", 3, 1, 100),
            shutdown_grace_seconds=env.number("SHUTDOWN_GRACE_SECONDS", 10, 0, 600),
            db_pool_size=env.integer("DB_POOL_SIZE", 8, 2, 200),
            presence_source=_presence_source(env.text("PRESENCE_SOURCE")),
            presence_source_set=env.is_set("PRESENCE_SOURCE"),
            presence_timeout=env.integer("PRESENCE_TIMEOUT_SECONDS", 30, 5, 300),
            presence_timeout_set=env.is_set("PRESENCE_TIMEOUT_SECONDS"),
            agora_ncs_secret=env.text("AGORA_NCS_SECRET"),
        )
        settings._check_pairs()
        return settings

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def _check_pairs(self) -> None:
        if self.event_source == "supabase" and not (
            self.supabase_url and self.supabase_service_role_key
        ):
            raise ConfigError(
                "EVENT_SOURCE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
        for name, path in (
            ("APNS_KEY_FILE", self.apns_key_file),
            ("APNS_CA_FILE", self.apns_ca_file),
            ("FCM_SERVICE_ACCOUNT_FILE", self.fcm_service_account_file),
            ("TLS_CERT_FILE", self.tls_cert_file),
            ("TLS_KEY_FILE", self.tls_key_file),
        ):
            if path and not Path(path).is_file():
                raise ConfigError(f"{name} points to {path!r}, which is not a readable file")

    @property
    def presence_agora(self) -> bool:
        return "agora" in self.presence_source

    @property
    def apns_configured(self) -> bool:
        return all((self.apns_key_file, self.apns_key_id, self.apns_team_id, self.apns_bundle_id))

    @property
    def fcm_configured(self) -> bool:
        return self.fcm_service_account_file is not None

    def require_database(self) -> str:
        if not self.database_url:
            raise ConfigError("DATABASE_URL is required (a postgresql:// connection string)")
        return self.database_url

    def require_push_credentials(self) -> None:
        """`PUSH_DRY_RUN=0` promises real pushes: refuse to start without the credentials."""
        if self.push_dry_run is False:
            missing = [
                name
                for name, ok in (
                    ("APNs (APNS_*)", self.apns_configured),
                    ("FCM (FCM_SERVICE_ACCOUNT_FILE)", self.fcm_configured),
                )
                if not ok
            ]
            if missing:
                raise ConfigError(
                    "PUSH_DRY_RUN=0 but credentials are missing for " + " and ".join(missing)
                )

    def require_agora(self) -> tuple[str, str]:
        if not self.agora_app_id or not self.agora_app_cert:
            raise ConfigError("AGORA_APP_ID and AGORA_APP_CERT are required by the token server")
        return self.agora_app_id, self.agora_app_cert


def _presence_source(value: str | None) -> str:
    """`none`, `agora`, `heartbeat` or both (any order, spaces allowed) → the canonical form."""
    if value is None or not value.strip():
        return "none"
    parts = {part.strip().lower() for part in value.split(",") if part.strip()}
    if parts == {"none"}:
        return "none"
    if not parts or not parts <= {"agora", "heartbeat"}:
        raise ConfigError(
            f"PRESENCE_SOURCE must be one of {', '.join(PRESENCE_SOURCES)} (got {value!r})"
        )
    return ",".join(sorted(parts))
