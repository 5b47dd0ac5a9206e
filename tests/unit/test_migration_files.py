from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.common.migrate import MigrationError, load_migrations
from crmsync.common.settings import repo_root


def test_project_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations(repo_root() / "infra" / "migrations")]
    assert versions == list(range(1, len(versions) + 1))


def test_rejects_a_file_not_named_nnnn_description(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match=r"init\.sql"):
        load_migrations(tmp_path)


def test_rejects_two_files_with_one_version(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 2")
    with pytest.raises(MigrationError, match="used twice"):
        load_migrations(tmp_path)
