"""The CLI's seam between local and remote mode (crmsync/cli/backend.py): one table of
operations that must be the admin API's own, answers read back as the operation's type,
refusals as the local exit codes, and help text on every option of every command."""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from crmsync.application.errors import ConflictError, InvalidError, NotFoundError
from crmsync.application.models import (
    ApiKeyQuery,
    ConnectionQuery,
    DeadLetterQuery,
    Page,
    TenantOut,
)
from crmsync.application.operations import OPERATIONS
from crmsync.cli import main
from crmsync.cli.backend import (
    EXIT_CONFLICT,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    CommandError,
    ConnectionRef,
    _named,
    _params,
    _refusal,
    _result_type,
    connection_arg,
    describe,
    exit_code,
    reach_stack,
)
from crmsync.common.db import connect, create_pool
from crmsync.localstack.status import StackError
from services.admin.routes import routes


def test_every_operation_has_its_route_and_every_route_its_operation() -> None:
    # Remote mode finds an operation's route by operationId; a route runs the operation
    # of its operationId. One without the other would work in one mode only.
    assert sorted(OPERATIONS) == sorted(r.operation_id for r in routes())
    assert all(r.operation is OPERATIONS[r.operation_id] for r in routes())


def test_the_answer_is_read_as_the_type_the_operation_returns() -> None:
    tenant = TenantOut(id=uuid.uuid4(), slug="acme", name="acme", created_at=datetime.now(UTC))
    read = _result_type(OPERATIONS["getTenant"]).validate_json(tenant.model_dump_json())
    assert read == tenant
    assert read.model_dump_json() == tenant.model_dump_json()
    empty = _result_type(OPERATIONS["listConnections"]).validate_python(
        {"items": [], "next_cursor": None}
    )
    assert isinstance(empty, Page)
    with pytest.raises(ValidationError):
        _result_type(OPERATIONS["listSyncJobs"]).validate_python(
            {"items": [{"id": "not a job"}], "next_cursor": None}
        )


def test_a_query_goes_out_as_the_text_the_api_parses() -> None:
    query = DeadLetterQuery(state="all", limit=5)
    assert _params(query) == {"state": "all", "limit": "5"}
    assert _params(ConnectionQuery(name="stripe")) == {"limit": "50", "name": "stripe"}
    assert _params(ApiKeyQuery(include_revoked=True))["include_revoked"] == "true"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, EXIT_INVALID),
        (401, EXIT_INVALID),
        (403, EXIT_INVALID),
        (404, EXIT_NOT_FOUND),
        (409, EXIT_CONFLICT),
        (422, EXIT_INVALID),
        (500, EXIT_UNAVAILABLE),
        (503, EXIT_UNAVAILABLE),
    ],
)
def test_a_problem_document_exits_as_local_mode_would(status: int, code: int) -> None:
    raw = json.dumps({"type": "about:blank", "title": "x", "status": status, "detail": "no"})
    assert exit_code(_refusal(status, raw.encode())) == code


def test_local_refusals_keep_their_exit_codes() -> None:
    assert exit_code(NotFoundError("no connection")) == EXIT_NOT_FOUND
    assert exit_code(ConflictError("taken")) == EXIT_CONFLICT
    assert exit_code(InvalidError("bad", loc="/body/x", msg="no")) == EXIT_INVALID


def test_a_remote_refusal_reads_like_the_local_one() -> None:
    local = InvalidError("invalid body", loc="/body/kind", msg="not a kind")
    document = {"type": "about:blank", "title": "Unprocessable Content", "status": 422}
    document |= {"detail": local.detail, **local.extensions}
    remote = _refusal(422, json.dumps(document).encode())
    assert describe(remote) == describe(local) == "invalid body (/body/kind: not a kind)"
    conflict = _refusal(409, b'{"status": 409, "detail": "busy", "existing_job_id": "x"}')
    assert conflict.extensions == {"existing_job_id": "x"}


def test_a_refused_key_says_which_setting_to_check() -> None:
    refused = _refusal(401, b'{"status": 401, "detail": "a valid API key is required"}')
    assert "CRMSYNC_API_KEY" in describe(refused)
    not_json = _refusal(502, b"<html>Bad Gateway</html>")
    assert describe(not_json) == "<html>Bad Gateway</html>"


def test_a_connection_is_named_by_id_or_tenant_slash_name() -> None:
    cid = uuid.uuid4()
    assert connection_arg(str(cid)) == ConnectionRef(str(cid), id=cid)
    assert connection_arg("acme/stripe eu") == ConnectionRef(
        "acme/stripe eu", tenant="acme", name="stripe eu"
    )
    for bad in ("stripe", "/stripe", "acme/", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="TENANT/NAME"):
            connection_arg(bad)


class _NoConnections:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, operation_id: str, arguments: dict[str, Any]) -> Any:
        self.calls.append((operation_id, arguments))
        return Page(items=[], next_cursor=None)

    async def resolve(self, ref: ConnectionRef) -> uuid.UUID:
        raise NotImplementedError


async def test_a_tenant_slash_name_is_looked_up_by_name_and_a_bad_one_refused() -> None:
    backend = _NoConnections()
    with pytest.raises(CommandError) as missing:
        await _named(backend, connection_arg("acme/stripe"))
    assert (missing.value.code, str(missing.value)) == (EXIT_NOT_FOUND, "no connection acme/stripe")
    assert backend.calls == [("listConnections", {"query": ConnectionQuery(name="stripe")})]
    with pytest.raises(CommandError) as bad:
        await _named(backend, connection_arg("acme/a/b"))
    assert bad.value.code == EXIT_INVALID
    assert len(backend.calls) == 1


def _parsers(
    parser: argparse.ArgumentParser, path: str
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}")
    return found


def test_every_option_and_argument_of_every_command_has_help() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in _parsers(main.build_parser(), "crmsync")
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not (action.help or "").strip()
    ]
    assert missing == []


def test_every_admin_command_takes_the_remote_options() -> None:
    without = [
        path
        for path, parser in _parsers(main.build_parser(), "crmsync")
        if any(a.dest == "tenant" for a in parser._actions)
        and path.split()[1] not in main.LOCAL_ONLY
        and not {"--api-url", "--api-key"} <= {o for a in parser._actions for o in a.option_strings}
    ]
    assert without == []


@pytest.mark.parametrize("command", sorted(main.LOCAL_ONLY))
def test_local_only_commands_say_so_in_remote_mode(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRMSYNC_API_URL", "https://admin.example.test")
    argv = {
        "infra": ["infra", "status"],
        "topics": ["topics", "ensure"],
        "simulate": ["simulate", "--providers", "stripe"],
    }.get(command, [command])
    with pytest.raises(SystemExit) as exited:
        main.main(argv)
    assert exited.value.code == EXIT_INVALID
    assert f"`crmsync {command}` works on this machine's stack only" in capsys.readouterr().err


async def test_a_database_that_cannot_be_reached_is_a_stack_error_saying_to_start_it() -> None:
    """What every local command that opens the stack's PostgreSQL says when it is down."""
    closed = "postgresql://crmsync@127.0.0.1:1/crmsync"  # port 1: nothing listens
    hint = r"cannot connect to PostgreSQL: .*; is the stack up \(crmsync infra up\)\?"
    with pytest.raises(StackError, match=hint):
        await reach_stack(connect(closed))
    with pytest.raises(StackError, match=hint):
        await reach_stack(create_pool(closed, max_size=1))
