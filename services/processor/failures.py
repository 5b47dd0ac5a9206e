"""What the processor does with a failure, decided here and nowhere else.

The agents (guard.py) and the apply step (pipeline.py) ask ``action_for`` and act:

- ``RETRY``: a RetryLater, or PostgreSQL, Kafka or the network away
  (faults.is_transient). Wait in place with backoff for as long as it lasts; acknowledge
  nothing.
- ``DEAD_LETTER``: a DeadLetter (InvalidChangeError, ...). Park the change with the
  error's own reason; the rest of the batch goes on.
- ``REJECTED``: PostgreSQL refusing a change (an integrity or data error). A batch is
  replayed change by change; a single change is parked as ``rejected_by_database``.
- ``UNEXPECTED``: anything else, a bug or an outage in disguise. Retried a few times,
  then the batch is taken apart and the culprit parked as ``internal_error``.

A DeadLetter is parked where it is raised, with its reason; one that reaches the guard
unhandled is a bug there, and is treated as unexpected.
"""

from __future__ import annotations

from enum import StrEnum

import asyncpg

from crmsync.common.faults import describe, is_transient
from schemas.errors import DeadLetter


class Action(StrEnum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    REJECTED = "rejected"
    UNEXPECTED = "unexpected"


# PostgreSQL saying "not this change" (a foreign key to a deleted connection, a value out
# of range: SQLSTATE classes 23 and 22), not "not now".
_DATABASE_REFUSALS = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


def action_for(exc: BaseException) -> Action:
    # Refusals first: batch.ChangesRejectedError is an integrity violation on purpose, so
    # a batch with a change Python's checks caught is replayed like one PostgreSQL caught.
    if isinstance(exc, _DATABASE_REFUSALS):
        return Action.REJECTED
    if isinstance(exc, DeadLetter):
        return Action.DEAD_LETTER
    if is_transient(exc):
        return Action.RETRY
    return Action.UNEXPECTED


def parked_as(exc: BaseException) -> tuple[str, str] | None:
    """The dead letter's reason and detail when ``exc`` says to park the one change that
    raised it; None when it must go up (an outage to wait out, a bug for the guard)."""
    match action_for(exc):
        case Action.DEAD_LETTER:
            assert isinstance(exc, DeadLetter)  # noqa: S101 - action_for checked it
            return exc.reason, exc.detail
        case Action.REJECTED:
            return "rejected_by_database", f"{type(exc).__name__}: {exc}"
        case _:
            return None


def unexpected_detail(exc: BaseException) -> tuple[str, str]:
    """What the guard parks an event with once its retries of an unexpected error are up."""
    return "internal_error", describe(exc)
