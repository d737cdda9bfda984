"""Settings of the gateway: one pydantic-settings class, read from the environment or flags.

Every setting has an environment name (``INVOKEAI_URL`` or ``GATEWAY_*``) and a flag of
``invokeai-gateway serve`` (see ``app.cli``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.backends.spec import BackendSpec, parse_backends

__all__ = ["Settings", "get_settings"]

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "invokeai-gateway"


def _env(name: str) -> AliasChoices:
    # Accept the documented environment name and the plain field name (for keyword use).
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    """Configuration of one gateway process.

    Example:
        >>> Settings(invokeai_url="http://127.0.0.1:9090", data_dir="/tmp/gw").database_url
        'sqlite:////tmp/gw/gateway.db'
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    invokeai_url: str = Field(
        "http://127.0.0.1:9090",
        validation_alias=_env("INVOKEAI_URL"),
        description=(
            "Base URL of the InvokeAI server, or a comma-separated list of them, each as"
            " [name=]URL[;weight=N] (see app.backends.spec)."
        ),
    )
    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        validation_alias=_env("GATEWAY_DATA_DIR"),
        description="Folder for the default SQLite database.",
    )
    database_url: str = Field(
        "",
        validation_alias=_env("GATEWAY_DATABASE_URL"),
        description="SQLAlchemy URL of the database (default: a SQLite file in data_dir).",
    )
    host: str = Field("127.0.0.1", validation_alias=_env("GATEWAY_HOST"))
    port: int = Field(8080, ge=0, le=65535, validation_alias=_env("GATEWAY_PORT"))
    max_upload_bytes: int = Field(
        50 * 1024 * 1024,
        gt=0,
        validation_alias=_env("GATEWAY_MAX_UPLOAD_BYTES"),
        description="Largest request body accepted (workflow files, images, data URLs).",
    )
    retry_after_seconds: int = Field(
        5,
        ge=1,
        validation_alias=_env("GATEWAY_RETRY_AFTER"),
        description="Retry-After sent with 503 while InvokeAI is unreachable.",
    )
    sse_ping_seconds: float = Field(
        15.0,
        gt=0,
        validation_alias=_env("GATEWAY_SSE_PING"),
        description="Interval of SSE heartbeats.",
    )
    max_wait_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias=_env("GATEWAY_MAX_WAIT"),
        description="Upper bound on `Prefer: wait=N`.",
    )
    reconcile_interval_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("GATEWAY_RECONCILE_INTERVAL"),
        description="How often unfinished runs are re-checked while InvokeAI is unreachable.",
    )
    backend_grace_seconds: float = Field(
        300.0,
        ge=0,
        validation_alias=_env("GATEWAY_BACKEND_GRACE"),
        description=(
            "With several InvokeAI servers: how long runs on the queue of one that stopped"
            " answering wait for it before they are sent to another (runs it never got move"
            " at once)."
        ),
    )
    cluster: bool = Field(
        False,
        validation_alias=_env("GATEWAY_CLUSTER"),
        description=(
            "Several gateway replicas share this (PostgreSQL) database: each InvokeAI server"
            " is followed by one replica at a time, under a lease (see docs/scaling.md)."
        ),
    )
    lease_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("GATEWAY_LEASE_SECONDS"),
        description="With GATEWAY_CLUSTER: how long a replica's leases last unrenewed.",
    )
    migrate_on_start: bool = Field(True, validation_alias=_env("GATEWAY_MIGRATE_ON_START"))

    # -- security, idempotency, deadlines, backpressure --------------------------------------
    api_keys: SecretStr = Field(
        SecretStr(""),
        validation_alias=_env("GATEWAY_API_KEYS"),
        description="Comma-separated API keys (`Authorization: Bearer`); none: loopback only.",
    )
    cors_origins: str = Field(
        "",
        validation_alias=_env("GATEWAY_CORS_ORIGINS"),
        description="Comma-separated origins allowed by CORS (none: no CORS headers).",
    )
    invokeai_username: str | None = Field(
        None,
        validation_alias=_env("INVOKEAI_USERNAME"),
        description="Log in to a multi-user InvokeAI as this user.",
    )
    invokeai_password: SecretStr | None = Field(
        None, validation_alias=_env("INVOKEAI_PASSWORD"), description="Password of that user."
    )
    idempotency_ttl_seconds: float = Field(
        24 * 3600.0,
        gt=0,
        validation_alias=_env("GATEWAY_IDEMPOTENCY_TTL"),
        description="How long an Idempotency-Key is remembered.",
    )
    # Above the 1,000 streams on one run that the benchmarks measure, with room to spare.
    max_streams: int = Field(
        4096,
        ge=1,
        validation_alias=_env("GATEWAY_MAX_STREAMS"),
        description="Server-Sent Events streams open at once in all; past it, 503.",
    )
    max_streams_per_key: int = Field(
        2048,
        ge=1,
        validation_alias=_env("GATEWAY_MAX_STREAMS_PER_KEY"),
        description="Streams open at once per API key (or in all, without keys); past it, 429.",
    )
    max_unfinished_runs: int = Field(
        1000,
        ge=1,
        validation_alias=_env("GATEWAY_MAX_UNFINISHED_RUNS"),
        description="Unfinished runs accepted at once; past it, 429 with Retry-After.",
    )
    max_batch_runs: int = Field(
        256,
        ge=1,
        validation_alias=_env("GATEWAY_MAX_BATCH_RUNS"),
        description="Runs one `POST /workflows/{id}/batches` may make; past it, 422.",
    )

    log_format: Literal["text", "json"] = Field(
        "text",
        validation_alias=_env("GATEWAY_LOG_FORMAT"),
        description="`json`: one JSON line per request, per run state change and per log "
        "record, with request and run ids (see app/core/logging_json.py).",
    )

    # -- webhooks ---------------------------------------------------------------------------
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        validation_alias=_env("GATEWAY_WEBHOOK_SECRET"),
        description="`whsec_` signing secret; comma-separated during rotation (signs with "
        "the first). Unset: one is generated once and kept in data_dir/webhook-secret.",
    )
    webhook_allow_private: bool = Field(
        False,
        validation_alias=_env("GATEWAY_WEBHOOK_ALLOW_PRIVATE"),
        description="Allow webhook URLs on loopback, private, link-local or reserved addresses.",
    )
    webhook_max_subscriptions: int = Field(
        100,
        ge=1,
        validation_alias=_env("GATEWAY_WEBHOOK_MAX_SUBSCRIPTIONS"),
        description="Standing webhook subscriptions kept at most; past it, 409.",
    )
    webhook_retry_window_seconds: float = Field(
        24 * 3600.0,
        gt=0,
        validation_alias=_env("GATEWAY_WEBHOOK_RETRY_WINDOW"),
        description="How long a delivery is retried before it is marked failed.",
    )
    webhook_backoff_base_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("GATEWAY_WEBHOOK_BACKOFF_BASE"),
        description="Delay before the first retry; doubles each time (with jitter).",
    )
    webhook_backoff_cap_seconds: float = Field(
        3600.0,
        gt=0,
        validation_alias=_env("GATEWAY_WEBHOOK_BACKOFF_CAP"),
        description="Longest delay between two attempts of a delivery.",
    )
    webhook_timeout_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("GATEWAY_WEBHOOK_TIMEOUT"),
        description="How long one delivery attempt may take.",
    )

    @field_validator("invokeai_url")
    @classmethod
    def _valid_backends(cls, value: str) -> str:
        parse_backends(value)  # a malformed list stops the start, naming the entry
        return value

    @property
    def backends(self) -> list[BackendSpec]:
        """The InvokeAI servers runs go to, in ``INVOKEAI_URL``'s order."""
        return parse_backends(self.invokeai_url)

    @property
    def api_key_list(self) -> list[str]:
        """The configured API keys (empty: authentication off, loopback only)."""
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        """The CORS allowlist."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'gateway.db'}"
        if self.cluster and not self.database_url.startswith("postgresql"):
            raise ValueError(
                "GATEWAY_CLUSTER needs a PostgreSQL GATEWAY_DATABASE_URL (replicas share it)"
            )
        return self

    def ensure_data_dir(self) -> None:
        """Create the folder of a SQLite database file if it is missing."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix):
            path = Path(self.database_url[len(prefix) :])
            if str(path) not in ("", ":memory:"):
                path.parent.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings from the environment (cached)."""
    return Settings()
