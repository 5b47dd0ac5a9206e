"""What a push's look at its target calls a state we have not heard (issue 17): pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.spec import RemoteRecord
from services.outbound.pusher import _Read, _unseen

T = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
HEARD = {"name": "Harbour Plumbing", "email": "office@harbour.example", "phone": "+61 2 5550 1"}


def _read(seen: dict[str, Any] | None, seen_at: datetime | None = T) -> _Read:
    return _Read(
        found=True, data={}, version=2, deleted=False, external_id="1", pushed_version=1,
        ref_links={}, seen=seen, seen_at=seen_at,
    )  # fmt: skip


def _there(data: dict[str, Any], at: datetime = T, *, deleted: bool = False) -> RemoteRecord:
    return RemoteRecord("customer", "1", at, data, deleted=deleted)


def test_the_state_last_heard_is_nothing_new() -> None:
    assert _unseen("customer", _there(HEARD), _read(HEARD)) is None


def test_a_field_changed_there_is_named_even_in_the_same_second() -> None:
    """Whole-second clocks (QuickBooks, Stripe): the time cannot tell, the values do."""
    there = _there({**HEARD, "phone": "+61 2 5550 9"})
    assert _unseen("customer", there, _read(HEARD)) == "phone"


def test_a_delete_there_is_unseen() -> None:
    assert _unseen("customer", _there({}, deleted=True), _read(HEARD)) == "deleted"


def test_a_state_older_than_one_heard_is_not_handed_over() -> None:
    """The processor would decide it stale and never take it in: the push would wait for
    nothing."""
    there = _there({**HEARD, "phone": "+61 2 5550 9"}, T - timedelta(seconds=1))
    assert _unseen("customer", there, _read(HEARD)) is None


def test_without_a_snapshot_there_is_nothing_to_compare() -> None:
    assert _unseen("customer", _there({**HEARD, "phone": "x"}), _read(None)) is None


def test_a_state_the_canonical_model_refuses_is_written_over_as_before() -> None:
    assert _unseen("customer", _there({"email": 5}), _read(HEARD)) is None


def test_a_field_we_never_heard_of_is_unseen() -> None:
    there = _there({**HEARD, "notes": "gate code 1234"})
    assert _unseen("customer", there, _read(HEARD)) == "notes"


def test_a_reference_moved_there_is_unseen() -> None:
    """A user who moves an invoice to another customer there changes no value, only what
    the reference names (``refs``: the canonical id the target's reference stands for)."""
    seen = {**HEARD, "customer_id": "c-1"}
    assert _unseen("customer", _there(HEARD), _read(seen), refs={"customer_id": "c-2"}) == (
        "customer_id"
    )
    assert _unseen("customer", _there(HEARD), _read(seen), refs={"customer_id": "c-1"}) is None


def test_a_reference_to_a_record_we_never_heard_of_is_unseen() -> None:
    seen = {**HEARD, "customer_id": "c-1"}
    refs = {"customer_id": "unlinked 58"}
    assert _unseen("customer", _there(HEARD), _read(seen), refs=refs) == "customer_id"


def test_a_field_the_target_sets_by_its_own_rules_is_left_out() -> None:
    """Stripe's own status of a PaymentIntent made for a payment from elsewhere: our write
    never sets it, so it cannot overwrite it, and its move is no user's edit."""
    seen = {"amount": 28350, "currency": "AUD", "status": "succeeded"}
    there = RemoteRecord("payment", "pi_1", T, {**seen, "status": "pending"})
    assert _unseen("payment", there, _read(seen)) == "status"
    assert _unseen("payment", there, _read(seen), own=frozenset({"status", "paid_at"})) is None


def test_stripe_names_what_it_sets_itself() -> None:
    from connectors.registry import connector  # noqa: PLC0415

    api = connector("stripe").api
    assert api is not None
    assert api.update_precondition == "read"
    assert api.own_fields["payment"] >= {"status", "paid_at"}
    assert api.own_fields["invoice"] >= {"subtotal", "tax", "total", "amount_due"}
    # The invoice's status is ours to move too (finalize, pay, void): compared.
    assert "status" not in api.own_fields["invoice"]


def test_quickbooks_myob_and_ascora_name_what_they_set_themselves() -> None:
    """Each computes an invoice's totals and amount due (our payment's push moves the
    balance there); QuickBooks and MYOB set its status from the balance too, and take none
    from us. Ascora's status is ours to write (draft, open, void): compared."""
    from connectors.registry import connector  # noqa: PLC0415

    derived = {"subtotal", "total", "amount_due"}
    for slug, status_ours in (("quickbooks", False), ("myob", False), ("ascora", True)):
        api = connector(slug).api
        assert api is not None
        assert api.own_fields["invoice"] >= derived, slug
        assert ("status" not in api.own_fields["invoice"]) is status_ours, slug
