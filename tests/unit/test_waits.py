"""Who waits behind whom in a batch (services/processor/waiting.py's Waits): a record's
changes apply in order, so a change of a record whose earlier change waits waits too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.processor.apply import Applied
from services.processor.decide import InboundChange, Outcome, Reference
from services.processor.waiting import Waits

CONN = uuid.UUID(int=1)
INVOICE = Reference("invoice_id", "invoice", "in_1")
OTHER = Reference("invoice_id", "invoice", "in_2")


def change(external_id: str) -> InboundChange:
    return InboundChange(
        uuid.UUID(int=2), CONN, "evt", "payment", "upsert", external_id, datetime.now(UTC), {}
    )


def test_a_record_waits_behind_its_first_waiting_change_and_no_other() -> None:
    waits = Waits({})
    assert waits.behind(change("pi_1")) is None
    waits.note(change("pi_1"), Applied(Outcome.WAITING, waits_for=INVOICE))
    waits.note(change("pi_1"), Applied(Outcome.WAITING, waits_for=OTHER))
    waits.note(change("pi_2"), Applied(Outcome.APPLIED))
    assert waits.behind(change("pi_1")) == INVOICE
    assert waits.behind(change("pi_2")) is None


def test_a_further_pass_forgets_this_batchs_waits_and_keeps_the_parked_ones() -> None:
    waits = Waits({change("pi_parked").record_key: OTHER})
    waits.note(change("pi_1"), Applied(Outcome.WAITING, waits_for=INVOICE))
    again = waits.next_pass()
    assert again.behind(change("pi_1")) is None
    assert again.behind(change("pi_parked")) == OTHER
