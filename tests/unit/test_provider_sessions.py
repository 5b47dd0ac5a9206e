"""Every HTTP session that can carry provider credentials comes from one factory,
``connectors.egress.provider_session``, which holds DESIGN invariant 12 (provider URLs go
to providers). A plain ``aiohttp.ClientSession()`` elsewhere in the product would be a way
around it, so this test reads the code and fails on one."""

from __future__ import annotations

import ast
from pathlib import Path

from connectors.egress import ALLOW_SETTING
from crmsync.common.settings import ProviderCallSettings, env_name, repo_root
from crmsync.settings.admin import AdminSettings
from crmsync.settings.ingest import IngestSettings
from crmsync.settings.outbound import OutboundSettings
from crmsync.settings.processor import ProcessorSettings

PRODUCT = ("connectors", "crmsync", "services")
# Sessions that never carry a connection's credentials.
NOT_PROVIDER_CALLS = {
    # The factory itself.
    Path("connectors/egress.py"),
    # Simulators POST their own signed webhooks to ingest (test and demo servers, DESIGN).
    Path("connectors/simkit.py"),
    # The CLI's remote mode calls the operator's own admin API (--api-url), never a provider.
    Path("crmsync/cli/backend.py"),
    # crmsync trigger POSTs a signed sample to the operator's own ingest URL, never to a
    # provider, and carries no credentials (the signature is the sample's).
    Path("crmsync/application/trigger.py"),
}


def _builds_a_session(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in {"ClientSession", "TCPConnector"}:
            lines.append(node.lineno)
    return lines


def test_provider_sessions_come_from_the_egress_factory() -> None:
    root = repo_root()
    found = {}
    for package in PRODUCT:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative in NOT_PROVIDER_CALLS:
                continue
            lines = _builds_a_session(ast.parse(path.read_text(), str(path)))
            if lines:
                found[str(relative)] = lines
    assert found == {}, "build provider sessions with connectors.egress.provider_session"


def test_private_provider_urls_are_refused_unless_the_operator_allows_them() -> None:
    # Ingest calls a provider too: it fetches the certificate a PayPal delivery names.
    for settings in (ProcessorSettings, OutboundSettings, AdminSettings, IngestSettings):
        field = settings.model_fields["allow_private_provider_urls"]
        assert field.default is False, settings.__name__
    # The variable each refusal names is the one the services read.
    assert env_name(ProviderCallSettings, "allow_private_provider_urls") == ALLOW_SETTING
