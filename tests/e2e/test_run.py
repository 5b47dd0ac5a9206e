"""`crmsync run`: every service up and ready, and Ctrl-C stops them all cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest

from crmsync.localstack.ports import free_port
from tests.e2e.helpers import stop, wait_until_ready

CRMSYNC = str(Path(sys.executable).with_name("crmsync"))
SERVICES = ("ingest", "processor", "outbound", "admin")


@pytest.fixture
def run_env(
    database_url: str, kafka_bootstrap: str, tmp_path: Path, topic_prefix: str
) -> dict[str, str]:
    env = {
        "CRMSYNC_KAFKA_TOPIC_PREFIX": topic_prefix,
        "CRMSYNC_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRMSYNC_PROCESSOR_APP_ID": f"crmsync-run-{uuid.uuid4().hex[:8]}",
        "CRMSYNC_LOG_FORMAT": "json",
    }
    for name in SERVICES:
        env[f"CRMSYNC_{name.upper()}_PORT"] = str(free_port())
    return env


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run_until_ctrl_c(
    args: list[str], run_env: dict[str, str], ports: Iterable[int], log: Path
) -> tuple[int, str]:
    """`crmsync run ARGS` until every port is ready and it says how to stop, then Ctrl-C:
    its exit code and what it wrote."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [CRMSYNC, "run", *args], env=run_env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        for port in ports:
            wait_until_ready(f"http://127.0.0.1:{port}/readyz", proc)
        deadline = time.monotonic() + 30
        while "Press Ctrl-C to stop." not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        # What a terminal's Ctrl-C does: SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        code = stop(proc, None)
    return code, log.read_text()


def test_run_starts_every_service_and_ctrl_c_stops_them(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    ports = {name: int(run_env[f"CRMSYNC_{name.upper()}_PORT"]) for name in SERVICES}
    code, output = _run_until_ctrl_c([], run_env, ports.values(), tmp_path / "run.log")
    assert code == 0, output
    for name, port in ports.items():
        assert f"{name:<10} http://127.0.0.1:{port}" in output
    assert "all services stopped" in output
    assert [n for n, p in ports.items() if _listening(p)] == []


def test_run_workers_starts_two_processors_and_two_outbounds(
    run_env: dict[str, str], tmp_path: Path
) -> None:
    """Issue 18: `--workers 2`: the second of each on the service's port + 100."""
    ports = {}
    for name in ("processor", "outbound"):
        port = int(run_env[f"CRMSYNC_{name.upper()}_PORT"])
        ports[name], ports[f"{name}-2"] = port, port + 100
    args = ["--services", "processor,outbound", "--workers", "2"]
    code, output = _run_until_ctrl_c(args, run_env, ports.values(), tmp_path / "run.log")
    assert code == 0, output
    for name, port in ports.items():
        assert f"{name:<10} http://127.0.0.1:{port}" in output
    assert [n for n, p in ports.items() if _listening(p)] == []


def test_run_stops_the_others_when_one_service_cannot_start(run_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run_env["CRMSYNC_ADMIN_PORT"] = str(taken.getsockname()[1])
        result = subprocess.run(
            [CRMSYNC, "run"], env=run_env, capture_output=True, text=True, timeout=120, check=False
        )
    assert result.returncode == 1
    assert "admin exited with status 1" in result.stderr
    assert "all services stopped" in result.stderr
    others = [
        int(run_env[f"CRMSYNC_{n.upper()}_PORT"]) for n in ("ingest", "outbound", "processor")
    ]
    assert not any(_listening(p) for p in others)
