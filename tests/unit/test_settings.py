from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import Field

from crmsync.common.settings import CommonSettings, ConfigError, parse_settings
from crmsync.settings.ingest import IngestSettings


class NeedsSecret(CommonSettings):
    example_secret: str = Field(min_length=1)


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_INGEST_PORT", "eighty")
    with pytest.raises(ConfigError, match="CRMSYNC_INGEST_PORT") as err:
        parse_settings(IngestSettings)
    assert "eighty" in str(err.value)


def test_missing_required_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRMSYNC_EXAMPLE_SECRET", raising=False)
    with pytest.raises(ConfigError, match="CRMSYNC_EXAMPLE_SECRET: required but not set"):
        parse_settings(NeedsSecret)


def test_every_error_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_INGEST_PORT", "0")
    monkeypatch.setenv("CRMSYNC_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as err:
        parse_settings(IngestSettings)
    assert "CRMSYNC_INGEST_PORT" in str(err.value)
    assert "CRMSYNC_LOG_LEVEL" in str(err.value)


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CRMSYNC_DATABASE_URL", "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS", "CRMSYNC_INGEST_PORT"):
        monkeypatch.delenv(var, raising=False)
    settings = parse_settings(IngestSettings)
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.database_url.endswith("@127.0.0.1:5433/crmsync")
    assert settings.ingest_port == 8080


@pytest.mark.parametrize("service", ["ingest", "processor", "outbound", "admin"])
def test_service_exits_2_naming_a_bad_variable(service: str) -> None:
    var = f"CRMSYNC_{service.upper()}_PORT"
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env={"PATH": "/usr/bin:/bin", var: "not-a-port"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert var in result.stderr


@pytest.mark.parametrize("service", ["ingest", "outbound", "admin"])
def test_service_exits_2_naming_a_master_key_ring_it_cannot_read(service: str) -> None:
    # The ring is parsed when the app is built, after the settings: a ConfigError there
    # ends the process as a bad variable does, not with a traceback.
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env={"PATH": "/usr/bin:/bin", "CRMSYNC_MASTER_KEYS": "not-a-key-ring"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "CRMSYNC_MASTER_KEYS" in result.stderr
    assert "Traceback" not in result.stderr
