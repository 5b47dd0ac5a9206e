"""Outbound's and the processor's pools skip asyncpg's reset query on release
(``crmsync.common.db.keep_session``). That is safe only while no code those services run
leaves session state on a pooled connection. These tests read the code each one imports
and fail on the statements that would leave some: session advisory locks, LISTEN, SQL
cursors, session settings."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.common.db import keep_session

ROOT = Path(__file__).resolve().parents[2]
OURS = ("crmsync", "connectors", "services", "schemas")
ENTRY_POINTS = {
    "outbound": ("services/outbound/__main__.py", "services/outbound/app.py"),
    "processor": ("services/processor/__main__.py", "services/processor/app.py"),
}
# Session state a service's code holds on purpose, and why its pool may still skip the reset.
ALLOWED = {
    # The outbox relay LISTENs on one pooled connection for as long as it runs, and
    # UNLISTENs it (asyncpg's remove_listener) before giving it back, or closes it.
    "processor": {"services/processor/outbox.py: LISTEN"},
}

# Applied to every string literal except docstrings. Statements are matched where a statement
# starts (the string's start or after a semicolon); transaction-scoped forms are allowed.
SQL_SESSION_STATE = {
    "a session-level advisory lock (use pg_advisory_xact_lock)": re.compile(
        r"pg_(try_)?advisory_lock(_shared)?\s*\(", re.IGNORECASE
    ),
    # The whole statement: "Listen address" in a setting's description is not one.
    "LISTEN": re.compile(r'(^|;)\s*LISTEN\s+("[^"]+"|\w+)\s*(;|$)', re.IGNORECASE),
    "an SQL cursor": re.compile(r"(^|;)\s*DECLARE\s+\w+\s.*\bCURSOR\b", re.IGNORECASE | re.DOTALL),
    "a session setting (use SET LOCAL)": re.compile(
        r"(^|;)\s*SET\s+(SESSION\s+)?(?!LOCAL\b)\w+(\s*=|\s+TO\b)", re.IGNORECASE
    ),
    "a session setting (use set_config(..., true))": re.compile(
        r"set_config\s*\((?![^)]*\btrue\s*\))", re.IGNORECASE
    ),
    "a temporary table": re.compile(r"(^|;)\s*CREATE\s+(TEMP|TEMPORARY)\s", re.IGNORECASE),
}
# asyncpg calls that hold server-side state past the call.
SESSION_CALLS = {"add_listener": "LISTEN", "cursor": "a server-side cursor"}


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def service_modules(service: str) -> dict[Path, ast.Module]:
    """Every module of ours that ``python -m services.<service>`` imports, parsed."""
    seen: dict[Path, ast.Module] = {}
    todo = [ROOT / p for p in ENTRY_POINTS[service]]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = tree = ast.parse(path.read_text(), str(path))
        for name in _imported(tree):
            if name.split(".")[0] not in OURS:
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a.b.c also runs a/__init__ and a/b/__init__
                found = _module_file(".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return seen


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def session_state_uses(path: Path, tree: ast.Module) -> list[str]:
    where = path.relative_to(ROOT)
    docstrings = _docstrings(tree)
    # An f-string's literal parts are read joined, with the f-string: alone, the part after
    # "UPDATE {table}" would start with SET.
    parts = {
        id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, joined
            text = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and id(node) not in parts
        ):
            text = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SESSION_CALLS
        ):
            found.append((node.lineno, SESSION_CALLS[node.func.attr]))
            continue
        else:
            continue
        for what, pattern in SQL_SESSION_STATE.items():
            if pattern.search(text):
                found.append((node.lineno, what))
    return [f"{where}:{line}: {what}" for line, what in sorted(found)]


# What each service's pool is used by, named by hand: the scan must reach at least these.
USES_OF_THE_POOL = {
    "outbound": (
        "services/outbound/pusher.py",
        "services/outbound/queue.py",
        "services/outbound/syncs.py",
        "connectors/runtime.py",
        "crmsync/common/pushes.py",
        "crmsync/application/sync/jobs.py",
        "crmsync/application/sync/runner.py",
        "crmsync/application/sync/schedule.py",
    ),
    "processor": (
        "services/processor/pipeline.py",
        "services/processor/batch.py",
        "services/processor/apply.py",
        "services/processor/outbox.py",
        "services/processor/normalize.py",
        "services/processor/housekeeping.py",
        "services/processor/sweep.py",
        "services/processor/waiting.py",
        "connectors/runtime.py",
        "crmsync/common/pushes.py",
    ),
}


@pytest.mark.parametrize("service", sorted(USES_OF_THE_POOL))
def test_the_scan_reads_the_code_that_uses_the_services_pool(service: str) -> None:
    modules = {str(p.relative_to(ROOT)) for p in service_modules(service)}
    for expected in USES_OF_THE_POOL[service]:
        assert expected in modules


def test_the_scan_finds_each_kind_of_session_state() -> None:
    source = '''
async def f(conn):
    """Docstrings may say LISTEN x; SET a = 1 and pg_advisory_lock(1)."""
    await conn.execute("SELECT pg_advisory_lock($1)", 1)
    await conn.execute("LISTEN changes")
    await conn.execute("DECLARE c CURSOR FOR SELECT 1")
    await conn.execute("SET statement_timeout = 5")
    await conn.execute("SELECT set_config('x', '1', false)")
    await conn.add_listener("changes", print)
    await conn.execute("SET LOCAL statement_timeout = 5")
    await conn.execute("SELECT pg_advisory_xact_lock(1), set_config('x', '1', true)")
    await conn.execute("UPDATE t SET a = 1")
    await conn.execute(f"UPDATE {table} SET a = 1")
    await conn.execute(f"SET statement_timeout = {ms}")
'''
    found = session_state_uses(ROOT / "example.py", ast.parse(source))
    assert [f.split(": ", 1)[1] for f in found] == [
        "a session-level advisory lock (use pg_advisory_xact_lock)",
        "LISTEN",
        "an SQL cursor",
        "a session setting (use SET LOCAL)",
        "a session setting (use set_config(..., true))",
        "LISTEN",
        "a session setting (use SET LOCAL)",
    ]


@pytest.mark.parametrize("service", sorted(ENTRY_POINTS))
def test_nothing_a_service_runs_leaves_session_state_on_a_pooled_connection(
    service: str,
) -> None:
    assert keep_session.__doc__  # the reason lives there
    found = [
        use
        for path, tree in service_modules(service).items()
        for use in session_state_uses(path, tree)
    ]
    allowed = ALLOWED.get(service, set())
    assert [f for f in found if _without_line(f) not in allowed] == [], (
        f"{service}'s pool does not reset connections on release (crmsync.common.db."
        "keep_session): give this code its own connection or bring the reset back"
    )
    # An exception that no longer matches anything is stale: drop it.
    assert allowed <= {_without_line(f) for f in found}


def _without_line(found: str) -> str:
    path, _line, what = found.split(":", 2)
    return f"{path}:{what}"


def test_the_pools_that_skip_the_reset_are_the_scanned_ones() -> None:
    """A service that starts passing keep_session is added to ENTRY_POINTS above."""
    users = {
        path.parent.name
        for path in (ROOT / "services").glob("*/*.py")
        if "reset=keep_session" in path.read_text()
    }
    assert users == set(ENTRY_POINTS)
