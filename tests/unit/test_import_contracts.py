from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from crmsync.common.settings import repo_root


def test_import_contracts_hold() -> None:
    """No service imports another; schemas imports nothing of ours; connectors no service."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.exists(), "import-linter missing (scripts/bootstrap installs it)"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
