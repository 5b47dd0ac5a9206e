"""One data-access module per table family: SQL on ``connections``, ``push_jobs`` and
``entity_links`` lives in crmsync/common/{connections,pushes,links}.py. These tests read
the source and fail when a statement on one of those tables appears anywhere else, so a
query cannot quietly grow a second home (and miss its tenant filter there)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from connectors.runtime import ConnectionInfo
from crmsync.common.connections import CONNECTION_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("crmsync", "services", "connectors")
OWNERS = {
    "connections": "crmsync/common/connections.py",
    "push_jobs": "crmsync/common/pushes.py",
    "entity_links": "crmsync/common/links.py",
}
# Case-sensitive, as our SQL is written: "from connections import" in prose or an import
# is not a statement. DELETE FROM is caught by FROM.
STATEMENT = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(connections|push_jobs|entity_links)\b")

# The processor's apply and batch statements are being rewritten elsewhere (issue 16's
# pure decide step); their bulk SQL stays with them.
NOT_SCANNED = frozenset({"services/processor/apply.py", "services/processor/batch.py"})

# Statements left beside other tables on purpose, counted, so a new one still fails here.
# (file, table) -> (how many, why).
KEPT: dict[tuple[str, str], tuple[int, str]] = {
    ("services/outbound/pusher.py", "connections"): (
        1,
        "the push's one-round-trip read: connection, record, its link and the links of "
        "the records it references, built from connectors' reference fields",
    ),
    ("services/outbound/pusher.py", "entity_links"): (
        3,
        "the same read (its link, the references' links) and the remember statement: "
        "link + sync log + finish the job in one statement, one transaction",
    ),
    ("services/processor/waiting.py", "entity_links"): (
        1,
        "the release of waiting changes: an EXISTS probe of the links' unique key inside "
        "the one statement that takes the changes whose reference is linked now",
    ),
    ("services/processor/deadletters.py", "connections"): (
        1,
        "a dead letter names its connection only when it is the tenant's, checked inside "
        "its own INSERT so a connection deleted meanwhile cannot break the insert",
    ),
    ("crmsync/application/connections.py", "push_jobs"): (
        2,
        "the health report: one snapshot of sync log, dead letters and push queue counts",
    ),
    ("crmsync/application/ledger_io.py", "entity_links"): (
        1,
        "the ledger's facts, read in its one repeatable-read snapshot with the records",
    ),
    ("crmsync/application/ledger_io.py", "push_jobs"): (1, "the ledger's facts, as above"),
    ("crmsync/application/records.py", "entity_links"): (
        1,
        "the records listing's filter, an EXISTS composed into its dynamic WHERE",
    ),
    ("crmsync/demo/scenario.py", "entity_links"): (
        2,
        "the demo's checks: links joined to customers by email",
    ),
    ("crmsync/demo/scenario.py", "push_jobs"): (
        1,
        "the demo's settle check: queue, outbox and sync log counts in one statement",
    ),
}


def statements() -> Counter[tuple[str, str]]:
    """(file, table) -> how many statements on the table the file holds, outside owners."""
    found: Counter[tuple[str, str]] = Counter()
    owners = set(OWNERS.values())
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if where in owners or where in NOT_SCANNED or "migrations" in path.parts:
                continue
            for match in STATEMENT.finditer(path.read_text()):
                found[(where, match.group(1))] += 1
    return found


def test_sql_on_owned_tables_lives_only_in_their_modules() -> None:
    found = statements()
    strays = {
        f"{where}: {n} statement(s) on {table}; move it to {OWNERS[table]}"
        for (where, table), n in found.items()
        if n > KEPT.get((where, table), (0, ""))[0]
    }
    assert not strays, "\n".join(sorted(strays))


def test_every_kept_statement_is_still_there() -> None:
    """A kept statement that moved to its owner (good) must leave this list too."""
    found = statements()
    stale = {
        f"{where}: {table} kept {n}, found {found[(where, table)]}"
        for (where, table), (n, _) in KEPT.items()
        if found[(where, table)] != n
    }
    assert not stale, "\n".join(sorted(stale))


def test_the_scan_sees_each_kind_of_statement() -> None:
    sql = """
        SELECT 1 FROM connections; SELECT 1 FROM t JOIN entity_links l ON true;
        UPDATE push_jobs SET a = 1; INSERT INTO entity_links VALUES (1);
        DELETE FROM connections WHERE id = $1;
    """
    assert [m.group(1) for m in STATEMENT.finditer(sql)] == [
        "connections",
        "entity_links",
        "push_jobs",
        "entity_links",
        "connections",
    ]
    assert not STATEMENT.search("from connections import x; JOIN connections_log")


def test_the_owners_hold_the_statements() -> None:
    for table, owner in OWNERS.items():
        text = (ROOT / owner).read_text()
        assert any(m.group(1) == table for m in STATEMENT.finditer(text)), owner


def test_connection_info_is_built_from_the_owners_columns() -> None:
    assert tuple(ConnectionInfo.__dataclass_fields__) == CONNECTION_COLUMNS
