from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field

from crmsync.common.settings import CommonSettings, repo_root

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class LocalStackSettings(CommonSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased.

    Kafka's listener and Postgres's port, role, password and database are read from
    ``CRMSYNC_KAFKA_BOOTSTRAP_SERVERS`` and ``CRMSYNC_DATABASE_URL``, so the stack always
    serves exactly what the services are told to use.
    """

    state_dir: Path = Field(
        default_factory=lambda: repo_root() / ".crmsync",
        description="Kafka data, logs and pid files of the local stack (git-ignored).",
    )
    cache_dir: Path = Field(
        default_factory=lambda: repo_root() / ".crmsync" / "cache",
        description="Downloaded Kafka jars (kept across `infra down --purge`).",
    )
    kafka_controller_port: int = Field(9093, ge=1, le=65535, description="KRaft controller port.")
    kafka_heap: str = Field(
        "512m", pattern=r"^\d+[mg]$", description="Kafka JVM heap (-Xmx), e.g. 512m."
    )
    kafka_start_timeout_seconds: float = Field(
        120.0, gt=0, description="How long `infra up` waits for the broker to answer."
    )
    pg_cluster: str = Field(
        "crmsync",
        pattern=r"^[a-z][a-z0-9_]{0,40}$",
        description="Name of the Debian PostgreSQL cluster the local stack owns.",
    )

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        first = self.kafka_bootstrap_servers.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def db(self) -> DatabaseTarget:
        return DatabaseTarget.parse(self.database_url)


class DatabaseTarget:
    """The parts of ``CRMSYNC_DATABASE_URL`` the local stack provisions."""

    def __init__(self, host: str, port: int, user: str, password: str, database: str) -> None:
        self.host, self.port, self.user = host, port, user
        self.password, self.database = password, database

    @classmethod
    def parse(cls, url: str) -> DatabaseTarget:
        parts = urlsplit(url)
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "crmsync"),
            password=unquote(parts.password or ""),
            database=unquote(parts.path.lstrip("/") or "crmsync"),
        )

    @property
    def is_local(self) -> bool:
        return self.host in LOCAL_HOSTS
