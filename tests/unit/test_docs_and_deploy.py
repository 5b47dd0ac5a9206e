"""The README, docker-compose.yml and CI stay true to the code."""

from __future__ import annotations

import re

from connectors.registry import documented_capabilities
from connectors.spec import ENTITY_TYPES
from crmsync.cli.config import USERS, reference
from crmsync.cli.matrix import table as matrix_table
from crmsync.common.settings import env_name, repo_root
from crmsync.localstack.kafka import kafka_version

ROOT = repo_root()
README = (ROOT / "README.md").read_text()
COMPOSE = (ROOT / "docker-compose.yml").read_text()


def _readme_code_lines() -> set[str]:
    blocks = re.findall(r"```[^\n]*\n(.*?)```", README, flags=re.S)
    return {line.strip() for block in blocks for line in block.splitlines() if line.strip()}


def test_readme_configuration_table_is_generated_from_the_settings() -> None:
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    table = README.split(start, 1)[1].split(end, 1)[0]
    assert table == reference(), "README is stale: paste the output of `crmsync config reference`"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test" in _readme_code_lines()
    assert re.search(r"^\./scripts/test\s*$", ci, flags=re.M)


def test_readme_names_both_setup_commands_and_they_exist() -> None:
    for command in ("./scripts/demo", "./scripts/test"):
        assert command in _readme_code_lines()
        assert (ROOT / command).stat().st_mode & 0o111, f"{command} is not executable"


def test_compose_kafka_image_is_the_pinned_kafka_version() -> None:
    images = re.findall(r"image:\s*apache/kafka:(\S+)", COMPOSE)
    assert images == [kafka_version()]


def test_compose_sets_only_variables_the_services_read() -> None:
    known = {env_name(cls, field) for _, cls in USERS for field in cls.model_fields}
    used = set(re.findall(r"\b(CRMSYNC_[A-Z0-9_]+)\b", COMPOSE))
    assert used, "docker-compose.yml sets no CRMSYNC_ variable"
    assert used <= known, f"unknown variables in docker-compose.yml: {sorted(used - known)}"


def test_readme_providers_matrix_is_generated_from_the_connectors() -> None:
    start, end = "<!-- connectors-matrix:start -->\n", "<!-- connectors-matrix:end -->"
    table = README.split(start, 1)[1].split(end, 1)[0]
    assert table == matrix_table(), (
        "README is stale: paste the output of `crmsync connectors matrix`"
    )


def test_readme_provider_summary_agrees_with_the_matrix() -> None:
    """The overview's short provider table says which kinds each syncs and how its webhooks
    arrive; both must be what the generated matrix says."""
    documented = documented_capabilities()
    summary = README.split("| provider (`--provider`) |", 1)[1].split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in summary.splitlines()[2:]]
    checked = set()
    for name_cell, *kind_cells, webhooks in rows:
        name = re.match(r"`([^`]+)`", name_cell)
        assert name is not None, name_cell
        slug = name.group(1)
        if "webhooks only" in kind_cells[0]:
            continue
        # `generic` (AcmeCRM, `acme.json`) is the row of its example mapping file.
        key = next((k for k in documented if k.startswith(f"{slug}: ")), slug)
        kinds = documented[key]
        said = {kind for kind, cell in zip(ENTITY_TYPES, kind_cells, strict=True) if "✓" in cell}
        synced = {k for k, row in kinds.items() if any(can.works for _, can in row.cells())}
        assert said == synced, f"{slug}: the summary says {said}, the matrix {synced}"
        thin = any(row.hydrate.support == "yes" for row in kinds.values())
        full = any(r.webhook.works and r.hydrate.support == "n/a" for r in kinds.values())
        assert ("thin" in webhooks) == thin, f"{slug}: thin webhooks {thin}"
        assert ("full" in webhooks) == full, f"{slug}: full webhooks {full}"
        checked.add(key)
    assert checked >= {"stripe", "xero", "quickbooks", "hubspot", "ascora", "mailchimp"}
