"""The one table per runtime that turns a failure into what happens next: the processor,
outbound pushes and sync runs."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from connectors.calls import CallFailedError
from connectors.http import ProviderError
from connectors.runtime import CredentialsError
from connectors.spec import MappingError
from crmsync.application.sync.jobs import JobCancelledError
from crmsync.application.sync.runner import RunPolicy, SyncFailedError, outcome_for, retry_delay
from crmsync.common.canonical import InvalidRecordError
from crmsync.common.crypto import CryptoError
from crmsync.common.db import DatabaseUnavailableError
from services.outbound.pusher import (
    MIN_PAUSE_SECONDS,
    Park,
    PushFailedError,
    PushPolicy,
    Reschedule,
)
from services.outbound.pusher import (
    action_for as push_action_for,
)
from services.processor.apply import ForeignReferenceError, InvalidChangeError
from services.processor.failures import Action, action_for, parked_as, unexpected_detail

# --- processor ----------------------------------------------------------------------------


class _RefusedBeforeWriting(asyncpg.IntegrityConstraintViolationError):
    """Like batch.ChangesRejectedError: Python's checks refused changes of a batch."""


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        (asyncpg.exceptions.CannotConnectNowError("starting up"), Action.RETRY),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), Action.RETRY),
        (KafkaConnectionError(), Action.RETRY),
        (ConnectionResetError(), Action.RETRY),
        (DatabaseUnavailableError("cannot connect"), Action.RETRY),
        (InvalidChangeError("invalid_data", "amount: not an integer"), Action.DEAD_LETTER),
        (ForeignReferenceError("customer_id x: no customer of this tenant"), Action.DEAD_LETTER),
        (MappingError("schema_violation", "data: expected an object"), Action.DEAD_LETTER),
        (asyncpg.ForeignKeyViolationError("connection gone"), Action.REJECTED),
        (asyncpg.NumericValueOutOfRangeError("too big"), Action.REJECTED),
        (_RefusedBeforeWriting("1 change(s) rejected"), Action.REJECTED),
        (KeyError("a bug"), Action.UNEXPECTED),
        (CryptoError("master key k2 is not in CRMSYNC_MASTER_KEYS"), Action.UNEXPECTED),
    ],
)
def test_processor_maps_each_failure_to_one_action(exc: BaseException, action: Action) -> None:
    assert action_for(exc) is action


def test_processor_parks_a_bad_change_with_its_own_reason() -> None:
    exc = InvalidChangeError("invalid_data", "amount: not an integer")
    assert parked_as(exc) == ("invalid_data", "amount: not an integer")


def test_processor_parks_a_change_postgres_refused_as_rejected_by_database() -> None:
    exc = asyncpg.ForeignKeyViolationError("violates foreign key")
    assert parked_as(exc) == (
        "rejected_by_database",
        "ForeignKeyViolationError: violates foreign key",
    )


@pytest.mark.parametrize(
    "exc", [asyncpg.exceptions.CannotConnectNowError("starting up"), KeyError("a bug")]
)
def test_processor_lets_outages_and_bugs_go_up(exc: BaseException) -> None:
    assert parked_as(exc) is None


def test_processor_parks_what_the_guard_gave_up_on_as_internal_error() -> None:
    assert unexpected_detail(KeyError("x")) == ("internal_error", "KeyError: 'x'")


# --- outbound -----------------------------------------------------------------------------

POLICY = PushPolicy(max_attempts=10, backoff_base_seconds=1.0, backoff_cap_seconds=300.0)


def _call(reason: str, *, retryable: bool, retry_after: float | None = None) -> CallFailedError:
    return CallFailedError(reason, retryable=retryable, retry_after=retry_after)


@pytest.mark.parametrize("reason", ["rate_limited", "circuit_open", "needs_reauth"])
def test_outbound_pauses_without_an_attempt_when_it_is_not_the_push_s_fault(reason: str) -> None:
    failure = _call(reason, retryable=True, retry_after=7.0)
    exc = PushFailedError("update", failure)
    assert push_action_for(exc, attempts=9, policy=POLICY) == Reschedule(
        7.0, count_attempt=False, call=failure
    )
    short = _call(reason, retryable=True)
    assert push_action_for(
        PushFailedError("update", short), attempts=0, policy=POLICY
    ) == Reschedule(MIN_PAUSE_SECONDS, count_attempt=False, call=short)


def test_outbound_retries_a_retryable_failure_with_backoff_until_attempts_run_out() -> None:
    failure = _call("provider_5xx", retryable=True, retry_after=3.0)
    exc = PushFailedError("create", failure)
    retry = Reschedule(3.0, count_attempt=True, call=failure)
    assert push_action_for(exc, attempts=0, policy=POLICY) == retry
    assert push_action_for(exc, attempts=8, policy=POLICY) == retry
    assert push_action_for(exc, attempts=9, policy=POLICY) == Park(
        "retries_exhausted", str(failure), failure
    )
    jittered = push_action_for(
        PushFailedError("create", _call("network", retryable=True)), attempts=2, policy=POLICY
    )
    assert isinstance(jittered, Reschedule)
    assert jittered.count_attempt
    assert MIN_PAUSE_SECONDS <= jittered.seconds <= 4.0


def test_outbound_parks_a_failure_no_retry_can_help_with_its_reason() -> None:
    failure = CallFailedError(
        "provider_4xx", retryable=False, error=ProviderError("POST /x answered 422", status=422)
    )
    assert push_action_for(PushFailedError("create", failure), attempts=0, policy=POLICY) == Park(
        "provider_4xx", "provider_4xx: POST /x answered 422", failure
    )


@pytest.mark.parametrize(
    ("exc", "park"),
    [
        (
            CredentialsError("connection 1 has no API credentials"),
            Park("no_credentials", "connection 1 has no API credentials"),
        ),
        (
            InvalidRecordError("foreign_reference", "customer_id x: no customer of this tenant"),
            Park("foreign_reference", "customer_id x: no customer of this tenant"),
        ),
        (
            MappingError("unsupported_entity", "job: Xero has no jobs"),
            Park("unsupported_entity", "job: Xero has no jobs"),
        ),
    ],
)
def test_outbound_parks_what_the_provider_cannot_take(exc: CredentialsError, park: Park) -> None:
    assert push_action_for(exc, attempts=0, policy=POLICY) == park


# --- sync runner --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (JobCancelledError("sync job 1 was cancelled"), ("cancelled", "sync job 1 was cancelled")),
        (SyncFailedError("listing customer: auth"), ("failed", "listing customer: auth")),
        (
            CredentialsError("connection 1 has no base URL"),
            ("failed", "connection 1 has no base URL"),
        ),
        # A record the provider lists that cannot be mapped, or credentials no master key
        # opens: resuming from the checkpoint meets the same error for ever.
        (
            MappingError("schema_violation", "invoice 7: line 2 has no amount"),
            ("failed", "schema_violation: invoice 7: line 2 has no amount"),
        ),
        (
            CryptoError("not a crmsync ciphertext"),
            ("failed", "not a crmsync ciphertext"),
        ),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), None),
        (KeyError("a bug"), None),
    ],
)
def test_sync_run_ends_by_the_error(exc: BaseException, outcome: tuple[str, str] | None) -> None:
    assert outcome_for(exc) == outcome


def test_sync_run_retries_a_listing_while_it_can_help() -> None:
    policy = RunPolicy(attempts=3, max_wait_seconds=120.0)
    assert retry_delay(_call("rate_limited", retryable=True, retry_after=600.0), 0, policy) == 120.0
    assert retry_delay(_call("provider_5xx", retryable=True, retry_after=2.0), 1, policy) == 2.0
    assert retry_delay(_call("provider_5xx", retryable=True, retry_after=2.0), 2, policy) is None
    assert retry_delay(_call("auth", retryable=False), 0, policy) is None
    jittered = retry_delay(_call("network", retryable=True), 1, policy)
    assert jittered is not None
    assert 0.0 <= jittered <= 2.0
