"""The settings base every service extends, and the one way to load it.

Each service declares one ``BaseSettings`` subclass and loads it in its composition root
with :func:`load_settings`; a bad or missing variable ends the process with its name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import Stop

ENV_PREFIX = "CRMSYNC_"

# The local stack's defaults; docker-compose.yml sets the same variables for containers.
DEFAULT_DATABASE_URL = "postgresql://crmsync:crmsync@127.0.0.1:5433/crmsync"
DEFAULT_KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9092"

# Exit status for configuration errors, distinct from a crash (1) so supervisors can tell.
EXIT_CONFIG = 2


class CommonSettings(BaseSettings):
    """Settings every service reads. Subclasses add their own, same prefix."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL, description="PostgreSQL DSN (asyncpg / libpq form)."
    )
    kafka_bootstrap_servers: str = Field(
        DEFAULT_KAFKA_BOOTSTRAP_SERVERS, description="Comma-separated Kafka bootstrap servers."
    )
    kafka_replication_factor: int = Field(
        1, ge=1, description="Replicas of topics crmsync creates: 1 on one broker, 3 in production."
    )
    kafka_topic_prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of every topic name, to share one cluster between environments.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Root log level."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto = JSON lines unless stderr is a terminal."
    )


class ProviderCallSettings(CommonSettings):
    """Settings of the services that call providers' APIs or accept their URLs (processor,
    outbound, admin). Same prefix."""

    allow_private_provider_urls: bool = Field(
        False,
        description="Let provider URLs use http and reach loopback, private, link-local and "
        "cloud metadata addresses (simulators, tests, an on-premises CRM). Off: a tenant's "
        "URL could otherwise reach this host's network with its credentials.",
    )


class ServiceSettings(ProviderCallSettings):
    """A service's own settings (ingest, processor, outbound, admin). Same prefix."""

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the service listens on: its ``<service>_host`` and
        ``<service>_port``."""
        raise NotImplementedError


def topic_name(settings: CommonSettings, topic: str) -> str:
    """The name a pipeline topic (``schemas.topics``) has in this deployment."""
    return settings.kafka_topic_prefix + topic


class ConfigError(Stop):
    """One or more settings are missing or invalid; the message names each variable."""


S = TypeVar("S", bound=BaseSettings)


def env_name(settings_cls: type[BaseSettings], field: str) -> str:
    prefix = settings_cls.model_config.get("env_prefix", "") or ""
    return f"{prefix}{field}".upper()


def describe_validation_error(settings_cls: type[BaseSettings], exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        name = env_name(settings_cls, field)
        if err["type"] == "missing":
            lines.append(f"{name}: required but not set")
        else:
            lines.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def parse_settings(settings_cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment, raising :class:`ConfigError` naming variables."""
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(settings_cls, exc)) from None


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Composition-root helper: a ConfigError raised within (a bad variable, a key ring an
    app cannot read) ends the process with status 2 and what it says, not a traceback."""
    try:
        yield
    except ConfigError as exc:
        print(f"crmsync: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def load_settings(settings_cls: type[S]) -> S:
    """Composition-root helper: parse settings or exit with status 2 and the variable names."""
    with exit_on_config_error():
        return parse_settings(settings_cls)


def repo_root() -> Path:
    """The checkout this package runs from (an editable install or the Docker image)."""
    return Path(__file__).resolve().parents[2]
