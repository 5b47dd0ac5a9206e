"""The CLI's remote mode: which deployed admin API the operator commands talk to."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from crmsync.common.settings import ENV_PREFIX


class RemoteSettings(BaseSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased; ``--api-url`` and
    ``--api-key`` override the first two."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    api_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The CLI's remote mode: the admin API its operator commands call "
        "instead of PostgreSQL (unset: local mode).",
    )
    api_key: SecretStr | None = Field(
        None, description="The CLI's remote mode: an admin or read API key of one tenant."
    )
    # A replay or a redrive of many dead letters waits for Kafka acknowledgements; the
    # admin API answers 503 after its own timeouts, well inside this.
    api_timeout_seconds: float = Field(
        60.0, gt=0, description="The CLI's remote mode: seconds one API call may take."
    )
