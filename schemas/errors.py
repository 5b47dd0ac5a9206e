"""Errors that say what to do: every exception class of ours derives from exactly one of
four bases, and the base is the instruction to whoever catches it.

They live in schemas, the package everything else builds on, because they are a shared
vocabulary like the envelopes: connectors raise them, services map them, and the
dead-letter ``reason`` they carry is stored and counted. Like the rest of schemas this
module imports nothing of ours.

- ``RetryLater``: a dependency is away and will come back (PostgreSQL, Kafka). Wait and
  try again, in place, with backoff; never acknowledge the work meanwhile.
- ``DeadLetter``: this event, change, push or run cannot be done as it is. Park it with
  ``reason`` (a bounded snake_case label: it is stored in ``dead_letters.reason`` and used
  as a metric label) and ``detail`` (for the operator), and move on. A caller may first
  retry a bounded number of times when the error says a retry can help (a provider's 5xx).
- ``RefuseInput``: bad input at an edge. Answer 4xx (the admin API, ingest) or exit
  non-zero (the CLI) with a message that says what to correct; nothing was done.
- ``Stop``: the process, or the run, must not continue (a misconfiguration, a missing
  secret, an operator's cancel). Say why and stop; retrying cannot help.

Errors of other libraries (asyncpg, aiokafka, OSError) have no base here;
``crmsync.common.faults.is_transient`` classifies those. The model is faststream's
``exceptions.py``, where a handler's exception tells the runtime to ack, nack or reject.
Each runtime maps these to its own actions in one place: the processor
(``services/processor/failures.py``), outbound pushes (``action_for`` in
``services/outbound/pusher.py``) and sync runs (``outcome_for`` and ``retry_delay`` in
``crmsync/application/sync/runner.py``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Action(StrEnum):
    RETRY_LATER = "retry_later"
    DEAD_LETTER = "dead_letter"
    REFUSE_INPUT = "refuse_input"
    STOP = "stop"


class CrmsyncError(Exception):
    """Base of every error of ours; derive from one of the four below, never from this."""

    action: ClassVar[Action]


class RetryLater(CrmsyncError):  # noqa: N818 - the name is the instruction
    """A dependency is away right now: retry in place with backoff, never acknowledge."""

    action = Action.RETRY_LATER


class DeadLetter(CrmsyncError):  # noqa: N818 - the name is the instruction
    """This work cannot be done as it is: park it with ``reason`` and move on.

    The message is ``reason: detail`` unless a subclass keeps a message of its own
    (``message``): several classes predate this base and their messages are shown to
    operators and asserted by tests.
    """

    action = Action.DEAD_LETTER
    # A bounded snake_case label: stored with the dead letter, used as a metric label.
    reason: str
    # What the operator reads: which field, which record, what the provider answered.
    detail: str
    # Set when the work failed part-way after a provider already took a write (a Stripe
    # invoice created, then its finalize refused): what the provider now holds, as a
    # connectors RemoteRecord or the provider's id (str), so the caller links it and a
    # retry or redrive updates it instead of creating another. None: nothing written.
    written: object | None = None

    def __init__(self, reason: str, detail: str = "", *, message: str | None = None) -> None:
        if message is None:
            message = f"{reason}: {detail}" if detail else reason
        super().__init__(message)
        self.reason = reason
        self.detail = detail


class ProviderRuleError(DeadLetter):
    """The provider's rules refuse this change to the record as it stands there: an edit
    to a Xero invoice with a payment allocated, an approved invoice back to draft, new
    lines on an open Stripe invoice. Retrying cannot help, so it is parked once as
    ``provider_rule`` with the rule in ``detail``, and the record's next change is tried
    afresh.

    ``written`` is what the provider took of the same change before the refused part
    (the provider's record as it now stands, or None when nothing was written): the
    caller keeps its link to it, so a redrive updates rather than creates. It is typed
    ``object`` because the record type belongs to the connectors, above this package.
    """

    reason = "provider_rule"

    def __init__(self, detail: str, *, written: object | None = None) -> None:
        super().__init__("provider_rule", detail)
        self.written = written


class RefuseInput(CrmsyncError):  # noqa: N818 - the name is the instruction
    """Bad input at an edge: answer 4xx, or exit non-zero, with a message that says what
    to correct."""

    action = Action.REFUSE_INPUT


class Stop(CrmsyncError):  # noqa: N818 - the name is the instruction
    """The process (or the run) must not continue: a misconfiguration, a missing secret,
    an operator's stop. Retrying cannot help."""

    action = Action.STOP


ACTION_BASES: tuple[type[CrmsyncError], ...] = (RetryLater, DeadLetter, RefuseInput, Stop)


def action_for(exc: BaseException) -> Action | None:
    """What an error of ours asks for; None for anyone else's (see faults.is_transient)."""
    return exc.action if isinstance(exc, CrmsyncError) else None
