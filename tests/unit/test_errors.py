"""Every error of ours says what to do: it derives from exactly one of the four bases."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from connectors.calls import CallFailedError
from connectors.egress import EgressRefusedError
from connectors.generic.convert import ConversionError
from connectors.http import (
    AddressRefusedError,
    AuthError,
    NotFoundError,
    ProviderError,
    UnsupportedOperationError,
)
from connectors.runtime import CredentialsError
from connectors.spec import MappingError
from crmsync.application.sync.runner import SyncFailedError
from crmsync.common.faults import is_transient
from schemas.errors import (
    ACTION_BASES,
    Action,
    CrmsyncError,
    DeadLetter,
    RefuseInput,
    RetryLater,
    Stop,
    action_for,
)

PACKAGES = ("crmsync", "services", "connectors", "schemas")
# Ours on purpose without a base of ours: an asyncpg integrity violation, so that the
# processor replays a batch holding a change Python's checks refused exactly as it
# replays one PostgreSQL refused (services/processor/failures.py maps it).
FOREIGN_BY_DESIGN = {"services.processor.batch.ChangesRejectedError"}


def _our_exception_classes() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            # Entry points run when imported; simulators are test and demo servers.
            if info.name.endswith("__main__") or "simulator" in info.name or "simkit" in info.name:
                continue
            module = importlib.import_module(info.name)
            found.extend(
                obj
                for obj in vars(module).values()
                if inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            )
    return found


OURS = [
    cls
    for cls in _our_exception_classes()
    if cls not in (CrmsyncError, *ACTION_BASES)
    and f"{cls.__module__}.{cls.__qualname__}" not in FOREIGN_BY_DESIGN
]


def test_the_walk_finds_the_errors_of_every_layer() -> None:
    modules = {cls.__module__.split(".")[0] for cls in OURS}
    assert {"crmsync", "services", "connectors"} <= modules
    assert len(OURS) >= 40


@pytest.mark.parametrize("cls", OURS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_error_of_ours_maps_to_exactly_one_action(cls: type[BaseException]) -> None:
    bases = [base for base in ACTION_BASES if issubclass(cls, base)]
    assert len(bases) == 1, f"{cls.__qualname__} derives from {bases or 'none of the four'}"
    assert cls.action is bases[0].action  # type: ignore[attr-defined]


def test_the_four_bases_are_four_actions() -> None:
    assert [b.action for b in ACTION_BASES] == list(Action)
    for base in ACTION_BASES:
        assert [b for b in ACTION_BASES if issubclass(base, b)] == [base]


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        (RetryLater(), Action.RETRY_LATER),
        (DeadLetter("unparseable", "body: not JSON"), Action.DEAD_LETTER),
        (RefuseInput(), Action.REFUSE_INPUT),
        (Stop(), Action.STOP),
        (MappingError("schema_violation", "x"), Action.DEAD_LETTER),
        (EgressRefusedError("loopback", "127.0.0.1"), Action.REFUSE_INPUT),
        (ValueError("not ours"), None),
        (OSError("not ours"), None),
    ],
)
def test_action_for_reads_the_base(exc: BaseException, action: Action | None) -> None:
    assert action_for(exc) == action


def test_a_dead_letter_carries_a_reason_and_a_detail() -> None:
    exc = DeadLetter("unknown_event_type", "type: invoice.voided")
    assert (exc.reason, exc.detail, str(exc)) == (
        "unknown_event_type",
        "type: invoice.voided",
        "unknown_event_type: type: invoice.voided",
    )
    assert str(DeadLetter("no_mapping")) == "no_mapping"


def test_errors_that_kept_their_messages_name_a_reason_too() -> None:
    credentials = CredentialsError("connection 1 has no API credentials")
    assert (str(credentials), credentials.reason) == (
        "connection 1 has no API credentials",
        "no_credentials",
    )
    conversion = ConversionError("expected a number, got str")
    assert (str(conversion), conversion.reason) == (
        "expected a number, got str",
        "schema_violation",
    )
    assert isinstance(conversion, ValueError)
    failed = SyncFailedError("connection x syncs nothing inbound")
    assert (str(failed), failed.reason) == ("connection x syncs nothing inbound", "sync_failed")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ProviderError("GET /x: ClientConnectorError"), "network"),
        (ProviderError("GET /x answered 429", status=429), "rate_limited"),
        (ProviderError("GET /x answered 503", status=503), "provider_5xx"),
        (ProviderError("GET /x answered 422", status=422), "provider_4xx"),
        (NotFoundError("GET /x answered 404", status=404), "not_found"),
        (AuthError("GET /x answered 401", status=401), "auth"),
        (UnsupportedOperationError("no delete"), "unsupported"),
        (AddressRefusedError("GET /x: refused"), "address_refused"),
    ],
)
def test_a_provider_error_names_the_reason_connectors_calls_reports(
    error: ProviderError, reason: str
) -> None:
    assert error.reason == reason
    assert str(error) == error.detail  # the provider's message, unchanged
    assert str(CallFailedError(reason, retryable=False, error=error)) == f"{reason}: {error}"


def test_retry_later_is_transient_and_other_bases_are_not() -> None:
    assert is_transient(RetryLater("kafka away"))
    for exc in (DeadLetter("x"), RefuseInput(), Stop()):
        assert not is_transient(exc)


def test_a_refusal_is_not_transient_though_it_is_an_os_error() -> None:
    exc = EgressRefusedError("loopback", "127.0.0.1 is a loopback address")
    assert isinstance(exc, OSError)
    assert not is_transient(exc)


def test_an_error_of_ours_caused_by_an_outage_is_still_transient() -> None:
    # The walk over causes stays: a failed rollback's own error carries the real one.
    exc = Stop("could not finish")
    exc.__cause__ = asyncpg.exceptions.CannotConnectNowError("the database is starting up")
    assert is_transient(exc)


def test_foreign_rules_are_unchanged() -> None:
    assert is_transient(KafkaConnectionError())
    assert is_transient(ConnectionResetError())
    assert not is_transient(ValueError("a bug"))
