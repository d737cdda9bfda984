"""Settings of the gateway: one pydantic-settings class, read from the environment or flags.

Every setting has an environment name (``INVOKEAI_URL`` or ``GATEWAY_*``) and a flag of
``invokeai-gateway serve`` (see ``app.cli``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        description="Base URL of the InvokeAI server.",
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
    migrate_on_start: bool = Field(True, validation_alias=_env("GATEWAY_MIGRATE_ON_START"))

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'gateway.db'}"
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
