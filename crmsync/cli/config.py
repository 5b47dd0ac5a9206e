"""``crmsync config``: the configuration reference, generated from the settings classes.

The README's table is this output; a test fails when they differ, so documentation
cannot drift from what the code reads.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings

from crmsync.common.settings import CommonSettings, ProviderCallSettings, env_name, repo_root
from crmsync.localstack.settings import LocalStackSettings
from crmsync.settings.admin import AdminSettings
from crmsync.settings.ingest import IngestSettings
from crmsync.settings.outbound import OutboundSettings
from crmsync.settings.processor import ProcessorSettings
from crmsync.settings.remote import RemoteSettings

USERS: tuple[tuple[str, type[BaseSettings]], ...] = (
    ("all services", CommonSettings),
    ("ingest", IngestSettings),
    ("processor, outbound, admin", ProviderCallSettings),
    ("processor", ProcessorSettings),
    ("outbound", OutboundSettings),
    ("admin", AdminSettings),
    ("crmsync infra", LocalStackSettings),
    ("crmsync (remote mode)", RemoteSettings),
)


def _default(settings_cls: type[BaseSettings], field: str) -> str:
    info = settings_cls.model_fields[field]
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        # Paths under the checkout: show them relative, they differ per machine.
        default = info.default_factory()  # type: ignore[call-arg]
        return f"`{str(default).replace(str(repo_root()), '<checkout>')}`"
    return f"`{info.default}`"


def reference() -> str:
    """A Markdown table: variable, default, who reads it, what it means."""
    rows = ["| variable | default | read by | meaning |", "|---|---|---|---|"]
    seen: set[str] = set()
    for user, settings_cls in USERS:
        for field, info in settings_cls.model_fields.items():
            name = env_name(settings_cls, field)
            if name in seen:
                continue
            seen.add(name)
            rows.append(
                f"| `{name}` | {_default(settings_cls, field)} | {user} | {info.description} |"
            )
    return "\n".join(rows) + "\n"
