"""Typed configuration, read from ``SCOREBOARD_*`` environment variables (and a ``.env`` file).

No configuration at all gives the embedded shape: a SQLite file under ``data_dir`` and
in-process ranking. Every knob is documented in the README's configuration table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import limits
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scoreboard.redis_urls import parse_redis_url

MIN_SECRET_BYTES = 32
# Values that were published as examples: a server started with one of them trusts anyone
# who read the repository.
PUBLISHED_SECRETS = frozenset(
    {
        "change-me-to-at-least-32-random-bytes-xxxxxxxxxxxx",
        "change-me-too-at-least-32-random-bytes-yyyyyyyyyyy",
    }
)
# Words that mark an example; each is rare enough by chance in a random secret (< 1e-7).
PLACEHOLDER_WORDS = ("change", "example", "placeholder", "replace", "secret")


def looks_like_a_placeholder(value: str) -> bool:
    """A published value, a word that marks an example, or too few distinct characters for
    a random string (a token_urlsafe(48) has dozens)."""
    lowered = value.lower()
    return (
        value in PUBLISHED_SECRETS
        or any(word in lowered for word in PLACEHOLDER_WORDS)
        or len(set(value)) < 12
    )


class RuleSetting(BaseModel):
    """Overrides for one abuse rule (see scoreboard.abuse.rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int | None = Field(default=None, ge=0)
    window: int | None = Field(default=None, ge=1, description="seconds")
    policy: Literal["off", "flag", "block", "suspend"] | None = None


class InsecureSettingsError(ValueError):
    """Raised when a setting would be unsafe outside development."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCOREBOARD_", env_file=".env", extra="ignore", frozen=True
    )

    env: Literal["dev", "production"] = "dev"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)  # serve --workers (scoreboard.workers)
    data_dir: Path = Path("scoreboard-data")
    database_url: str | None = None
    database_read_url: str | None = None  # a PostgreSQL replica for reads that may lag
    auto_migrate: bool | None = None

    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwks_url: str | None = None
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = Field(default=5.0, ge=0, le=300)
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwks_unknown_kid_cooldown: float = Field(default=30.0, ge=0)

    action_secret: SecretStr | None = None
    action_previous_secrets: list[SecretStr] = Field(default_factory=list)
    actions_file: Path | None = None
    clock_skew: float = Field(default=30.0, ge=0, le=3600)

    public_read: bool = False
    allowed_origins: list[str] = Field(default_factory=list)
    trusted_proxies: list[str] = Field(default_factory=list)
    broadcast_interval: float = Field(default=0.1, ge=0.01, le=10)
    live_top_n: int = Field(default=10, ge=1, le=100)
    ws_max_per_user: int = Field(default=10, ge=1)
    ws_max_per_ip: int = Field(default=256, ge=1)
    ws_send_timeout: float = Field(default=10.0, gt=0)
    ws_ping_interval: float = Field(default=20.0, gt=0)
    ws_ping_timeout: float = Field(default=20.0, gt=0)
    ws_messages_per_second: float = Field(default=5.0, gt=0)
    ws_message_burst: int = Field(default=20, ge=1)
    max_body_size: int = Field(default=8192, ge=256, le=10_000_000)
    max_header_size: int = Field(default=32_768, ge=1024, le=1_048_576)
    header_timeout: float = Field(default=10.0, gt=0, le=600)
    body_timeout: float = Field(default=30.0, gt=0, le=600)
    max_connections: int | None = Field(default=None, ge=1)
    ws_max_write_buffer: int = Field(default=1_048_576, ge=65_536, le=1_073_741_824)
    openapi: bool = True
    docs_pages: bool | None = None  # the Swagger UI page at /schema; default: dev only
    redis_url: str | None = None
    redis_prefix: str = "scoreboard:"
    cache_sync_interval: float = Field(default=300.0, ge=1)
    cache_audit_users: int = Field(default=10_000, ge=1)
    cache_grace: float = Field(default=30.0, ge=1, le=3600)
    redis_max_connections: int = Field(default=64, ge=4, le=10_000)
    prune_interval: float = Field(default=3600.0, ge=1)
    rate_limit_storage: str | None = None
    rate_limit_ip: str = "600/minute"
    rate_limit_actions: str = "120/minute"
    rate_limit_updates: str = "120/minute"
    rate_limit_ws_connect: str = "60/minute"
    abuse_rules: dict[str, RuleSetting] = Field(default_factory=dict)
    metrics: bool = True
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    alert_webhook_url: str | None = None
    alert_webhook_secret: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] | None = None
    access_log: bool = True

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                f"(got {url.split('://', 1)[0]}://...)"
            )
        return url

    @field_validator("database_read_url")
    @classmethod
    def _replica(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a postgresql+asyncpg:// URL (a replica of the database)")
        return url

    @field_validator("alert_webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("redis_url")
    @classmethod
    def _redis_topology(cls, url: str | None) -> str | None:
        if url is not None:
            parse_redis_url(url)  # one server, a cluster or Sentinel; ValueError otherwise
        return url

    @field_validator("redis_prefix")
    @classmethod
    def _no_hash_tag(cls, prefix: str) -> str:
        # Each board period's keys carry their own hash tag ({board/period}); a tag in the
        # prefix would come first and put every board in one cluster slot.
        if "{" in prefix or "}" in prefix:
            raise ValueError(
                "must not contain '{' or '}': every board's keys carry their own hash tag"
            )
        return prefix

    @field_validator(
        "rate_limit_ip", "rate_limit_actions", "rate_limit_updates", "rate_limit_ws_connect"
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a rate such as '100/minute'") from exc
        return value

    @model_validator(mode="after")
    def _replica_of_postgres(self) -> Settings:
        if self.database_read_url and self.is_sqlite:
            raise ValueError(
                "SCOREBOARD_DATABASE_READ_URL needs SCOREBOARD_DATABASE_URL to be PostgreSQL"
            )
        return self

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        sources = [s for s in (self.jwt_secret, self.jwt_public_key, self.jwks_url) if s]
        if len(sources) > 1:
            raise ValueError(
                "configure only one of SCOREBOARD_JWT_SECRET, SCOREBOARD_JWT_PUBLIC_KEY "
                "and SCOREBOARD_JWKS_URL: one algorithm family at a time"
            )
        if self.jwt_secret and self.jwt_algorithm not in (None, "HS256"):
            raise ValueError("SCOREBOARD_JWT_SECRET goes with the HS256 algorithm only")
        if (self.jwt_public_key or self.jwks_url) and self.jwt_algorithm == "HS256":
            raise ValueError("a public key or JWKS URL needs RS256 or ES256, not HS256")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'scoreboard.db'}"

    @property
    def resolved_rate_limit_storage(self) -> str:
        """Where rate-limit and velocity windows live: Redis when configured (shared by all
        instances), else this process's memory."""
        if self.rate_limit_storage:
            return self.rate_limit_storage
        if self.redis_url:
            return "async+" + self.redis_url
        return "memory://"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def resolved_log_format(self) -> Literal["console", "json"]:
        if self.log_format:
            return self.log_format
        return "console" if self.env == "dev" else "json"

    def check_production_safety(self) -> None:
        """Refuse settings that are fine for a laptop but dangerous on a server."""
        if self.env != "production":
            return
        problems: list[str] = []
        if not (self.jwt_secret or self.jwt_public_key or self.jwks_url):
            problems.append(
                "no token key: set SCOREBOARD_JWT_SECRET, SCOREBOARD_JWT_PUBLIC_KEY "
                "or SCOREBOARD_JWKS_URL"
            )
        if self.jwt_secret and len(self.jwt_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            problems.append(f"SCOREBOARD_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        if self.action_secret is None:
            problems.append("SCOREBOARD_ACTION_SECRET must be set")
        secrets = [self.action_secret, *self.action_previous_secrets]
        if any(s and len(s.get_secret_value().encode()) < MIN_SECRET_BYTES for s in secrets):
            problems.append(f"action secrets must be at least {MIN_SECRET_BYTES} bytes")
        named = [
            ("SCOREBOARD_JWT_SECRET", self.jwt_secret),
            ("SCOREBOARD_ACTION_SECRET", self.action_secret),
            *(("SCOREBOARD_ACTION_PREVIOUS_SECRETS", p) for p in self.action_previous_secrets),
        ]
        for name, secret in named:
            if secret and looks_like_a_placeholder(secret.get_secret_value()):
                problems.append(
                    f"{name} looks like an example value, not a random secret "
                    "(generate real ones with `scoreboard secrets`)"
                )
        if self.jwks_url and not self.jwks_url.startswith("https://"):
            problems.append("SCOREBOARD_JWKS_URL must use https://")
        if problems:
            raise InsecureSettingsError(
                "refusing to start with SCOREBOARD_ENV=production: " + "; ".join(problems)
            )
