"""Simulators are test and demo servers (DESIGN): a service process never loads one.

The import contracts in pyproject.toml check the static graph; this checks what a real
import of each service's app module pulls in, lazy imports at module level included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from connectors.simulators import SIMULATORS
from crmsync.common.settings import repo_root

SERVICE_APPS = (
    "services.processor.app",
    "services.outbound.app",
    "services.ingest.app",
    "services.admin.app",
)

_LOADED = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _is_simulator(module: str) -> bool:
    return module in {"connectors.simkit", "connectors.simulators"} or (
        module.startswith("connectors.") and module.endswith(".simulator")
    )


def _modules_loaded_by(module: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _LOADED, module],
        cwd=repo_root(),
        env={**os.environ, "PYTHONPATH": str(repo_root())},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def test_no_service_app_loads_a_simulator() -> None:
    for app in SERVICE_APPS:
        loaded = _modules_loaded_by(app)
        assert app in loaded
        assert "connectors.registry" in loaded, app  # the check would be vacuous without
        assert [m for m in loaded if _is_simulator(m)] == [], app


def test_the_check_would_see_a_simulator() -> None:
    # The same probe, run on the registry of simulators, finds every one of them.
    loaded = _modules_loaded_by("connectors.simulators")
    found = {m for m in loaded if _is_simulator(m)}
    assert {cls.__module__ for cls in SIMULATORS.values()} | {"connectors.simkit"} <= found
