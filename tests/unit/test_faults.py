"""One classification of failures for every service: a dependency away (retry in place)
or not (the caller decides, never dropping acknowledged work)."""

from __future__ import annotations

import logging

import asyncpg
import pytest
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
)

from crmsync.common.faults import Backoff, describe, is_transient, retry_transient


def pg_error(sqlstate: str) -> asyncpg.PostgresError:
    """The asyncpg exception class PostgreSQL's SQLSTATE maps to, as asyncpg raises it."""
    cls = asyncpg.PostgresError.get_message_class_for_sqlstate(sqlstate)  # type: ignore[attr-defined]
    exc = cls("from the server")
    exc.sqlstate = sqlstate
    return exc  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "sqlstate",
    [
        "08006",  # connection failure
        "08001",  # unable to establish
        "53300",  # too many connections
        "53100",  # disk full
        "57P01",  # admin shutdown: `pg_ctl stop -m fast`, a restart
        "57P02",  # crash shutdown
        "57P03",  # cannot connect now: starting up or shutting down
        "57014",  # query canceled (statement timeout)
        "40001",  # serialization failure
        "40P01",  # deadlock detected
        "55P03",  # lock not available
        "25006",  # read-only transaction: a failover landed on a standby
        "28P01",  # password rotated under us
        "58030",  # I/O error
    ],
)
def test_server_errors_of_an_outage_are_transient(sqlstate: str) -> None:
    assert is_transient(pg_error(sqlstate))


@pytest.mark.parametrize(
    "sqlstate",
    [
        "23505",  # unique violation: this change is bad
        "23503",  # foreign key violation
        "22P02",  # invalid text representation
        "42P01",  # undefined table: a bug or a missing migration, not an outage
        "XX000",  # internal error
    ],
)
def test_errors_about_the_statement_or_the_data_are_not_transient(sqlstate: str) -> None:
    assert not is_transient(pg_error(sqlstate))


def test_a_connection_cut_mid_operation_is_transient() -> None:
    # What a PostgreSQL restart under load raised (the 20 lost changes): the
    # rollback of a transaction whose connection died, before the pool replaced it.
    assert is_transient(
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        )
    )
    assert is_transient(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"))
    assert is_transient(asyncpg.CannotConnectNowError("the database system is shutting down"))
    assert is_transient(asyncpg.InterfaceError("connection is closed"))


def test_asyncpg_misconfiguration_is_not_transient() -> None:
    assert not is_transient(asyncpg.exceptions.ClientConfigurationError("bad dsn"))


def test_an_error_raised_while_handling_an_outage_counts_as_the_outage() -> None:
    chained = RuntimeError("cleanup failed")
    chained.__context__ = ConnectionResetError("peer reset")
    assert is_transient(chained)
    # `raise ... from None` says the context does not matter: judged alone.
    suppressed = ValueError("rollback failed")
    suppressed.__context__ = ConnectionResetError("peer reset")
    suppressed.__suppress_context__ = True
    assert not is_transient(suppressed)


@pytest.mark.parametrize(
    "exc",
    [
        KafkaConnectionError("broker down"),
        KafkaTimeoutError(),
        NotLeaderForPartitionError(),
        CommitFailedError("rebalanced"),
    ],
)
def test_kafka_away_is_transient(exc: Exception) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [MessageSizeTooLargeError(), RecordTooLargeError()])
def test_a_record_kafka_refuses_is_not_transient(exc: Exception) -> None:
    assert not is_transient(exc)


def test_network_errors_are_transient_and_bugs_are_not() -> None:
    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert not is_transient(KeyError("data"))
    assert not is_transient(ValueError("bad"))


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(base_seconds=0.2, cap_seconds=5.0)
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.1 <= delays[0] <= 0.2
    assert all(2.5 <= d <= 5.0 for d in delays[6:])
    backoff.reset()
    assert backoff.next_delay() <= 0.2


def test_describe_names_the_type() -> None:
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(ValueError("x" * 1000)).startswith("ValueError: xxx")
    assert len(describe(ValueError("x" * 1000))) < 320


async def test_retry_transient_waits_out_an_outage_and_raises_anything_else() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise asyncpg.CannotConnectNowError("starting up")
        return "done"

    log = logging.getLogger("test")
    fast = Backoff(base_seconds=0.001, cap_seconds=0.002)
    assert await retry_transient(flaky, what="op", log=log, backoff=fast) == "done"
    assert calls == 3

    async def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retry_transient(broken, what="op", log=log, backoff=fast)
