from __future__ import annotations

from pydantic import Field

from crmsync.common.settings import CommonSettings


class AdminSettings(CommonSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased."""

    admin_host: str = Field("127.0.0.1", description="Listen address.")
    admin_port: int = Field(8081, ge=1, le=65535, description="Listen port.")
    admin_db_pool_size: int = Field(10, ge=1, description="Max Postgres connections.")
