"""Run one Apache Kafka node (KRaft, broker + controller) from Maven Central jars."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from aiokafka.errors import KafkaError

from crmsync.common.kafka import make_admin
from crmsync.common.settings import repo_root
from crmsync.localstack.settings import LocalStackSettings
from crmsync.localstack.status import ComponentStatus, Say, StackError

KAFKA_DIR = repo_root() / "infra" / "kafka"
MAIN_CLASS = "kafka.Kafka"
# Kafka's controlled shutdown of one node takes a few seconds; beyond this it is stuck.
STOP_TIMEOUT_SECONDS = 30.0


def kafka_version() -> str:
    """The one pinned Kafka version, from infra/kafka/pom.xml."""
    match = re.search(
        r"<kafka\.version>([^<]+)</kafka\.version>", (KAFKA_DIR / "pom.xml").read_text()
    )
    if not match:
        raise StackError("infra/kafka/pom.xml has no <kafka.version> property")
    return match.group(1).strip()


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes as 22 unpadded base64url characters.

    Never one that starts with "-": StorageTool would read it as an option and refuse
    ("argument --cluster-id/-t: expected one argument"). Kafka's own Uuid.randomUuid
    draws again for the same reason.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # Field 3, after the parenthesised command name, is the state letter.
    return stat.rpartition(")")[2].split()[0] != "Z"


class KafkaNode:
    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.host, self.port = settings.kafka_host_port
        self.home = settings.state_dir / "kafka"
        self.data_dir = self.home / "data"
        self.logs_dir = self.home / "logs"
        self.config_file = self.home / "server.properties"
        self.pid_file = self.home / "kafka.pid"
        self.libs = settings.cache_dir / f"kafka-{kafka_version()}" / "libs"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    # -- jars -------------------------------------------------------------------------

    def fetch_jars(self, say: Say) -> None:
        """Download Kafka's runtime jars once; an interrupted download is redone, not used."""
        marker = self.libs / ".complete"
        if marker.exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError("Maven (mvn) is not installed: run scripts/bootstrap")
        say(f"kafka: fetching Apache Kafka {kafka_version()} jars from Maven Central (once)")
        partial = self.libs.with_name("libs.partial")
        shutil.rmtree(partial, ignore_errors=True)
        result = subprocess.run(
            [
                mvn, "-q", "-B", "-f", str(KAFKA_DIR / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime", f"-DoutputDirectory={partial}",
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"mvn could not fetch the Kafka jars:\n{result.stdout}{result.stderr}")
        shutil.rmtree(self.libs, ignore_errors=True)
        partial.rename(self.libs)
        marker.touch()

    # -- process ----------------------------------------------------------------------

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise StackError("Java (17+) is not installed: run scripts/bootstrap")
        return java

    def render_config(self) -> str:
        template = (KAFKA_DIR / "server.properties").read_text()
        values = {
            "@HOST@": self.host,
            "@PORT@": str(self.port),
            "@CONTROLLER_PORT@": str(self.settings.kafka_controller_port),
            "@DATA_DIR@": str(self.data_dir),
        }
        for token, value in values.items():
            template = template.replace(token, value)
        return template

    def _jvm_args(self) -> list[str]:
        return [
            self._java(),
            "-Xms128m", f"-Xmx{self.settings.kafka_heap}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            "-cp", f"{self.libs}/*",
        ]  # fmt: skip

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        result = subprocess.run(
            [*self._jvm_args(), "kafka.tools.StorageTool", "format",
             f"--cluster-id={cluster_id}", "-c", str(self.config_file)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")

    def _spawn_detached(self, argv: list[str]) -> int:
        """Start the broker in its own session so it outlives this command and Ctrl-C.

        posix_spawn rather than Popen: nobody here waits for the broker, and a Popen
        object dropped while its child runs is a leaked resource.
        """
        out = self.logs_dir / "stdout.log"
        return os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(out), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )

    def pid(self) -> int | None:
        """The pid of our running broker, or None (a stale pid file is not trusted)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        if MAIN_CLASS.encode() in cmdline and str(self.config_file).encode() in cmdline:
            return pid
        return None

    def log_tail(self, lines: int = 20) -> str:
        chunks = []
        for name in ("stdout.log", "server.log"):
            path = self.logs_dir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                chunks.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(chunks)

    async def up(self, say: Say) -> None:
        running = self.pid()
        if running is not None:
            await self._wait_ready(running)
            say(f"kafka: already running on {self.endpoint}")
            return
        if await self.probe() is None:
            say(f"kafka: a broker not started by this stack answers on {self.endpoint}; using it")
            return
        self.fetch_jars(say)
        for d in (self.data_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.render_config())
        self._format_storage()
        pid = self._spawn_detached([*self._jvm_args(), MAIN_CLASS, str(self.config_file)])
        self.pid_file.write_text(f"{pid}\n")
        say(f"kafka: started pid {pid}, waiting for the broker on {self.endpoint}")
        await self._wait_ready(pid)
        say(f"kafka: ready on {self.endpoint}")

    async def _wait_ready(self, pid: int) -> None:
        deadline = time.monotonic() + self.settings.kafka_start_timeout_seconds
        problem: str | None = "not probed"
        while time.monotonic() < deadline:
            if not _alive(pid):
                raise StackError(f"kafka exited during start-up\n{self.log_tail()}")
            problem = await self.probe()
            if problem is None:
                return
            await asyncio.sleep(0.5)
        raise StackError(
            f"kafka did not answer on {self.endpoint} within "
            f"{self.settings.kafka_start_timeout_seconds:g}s: {problem}\n{self.log_tail()}"
        )

    async def probe(self) -> str | None:
        """None when the broker answers a metadata request, else what went wrong."""
        admin = make_admin(self.settings.kafka_bootstrap_servers, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            await asyncio.wait_for(admin.list_topics(), 5)
        except (KafkaError, OSError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            await admin.close()
        return None

    def down(self, say: Say) -> None:
        pid = self.pid()
        if pid is None:
            say("kafka: not running")
            self.pid_file.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            say(f"kafka: pid {pid} ignored SIGTERM for {STOP_TIMEOUT_SECONDS:g}s, killing it")
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        say(f"kafka: stopped pid {pid}")

    def purge(self, say: Say) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        say(f"kafka: removed {self.home}")

    async def status(self) -> ComponentStatus:
        pid = self.pid()
        problem = await self.probe()
        if pid is not None and problem is None:
            detail = f"running (pid {pid}), broker answers, Kafka {kafka_version()}"
        elif pid is not None:
            detail = f"process {pid} is alive but the broker does not answer: {problem}"
        elif problem is None:
            detail = "a broker answers (not started by this stack)"
        else:
            detail = f"not running ({problem})"
        return ComponentStatus("kafka", problem is None, detail, self.endpoint)
