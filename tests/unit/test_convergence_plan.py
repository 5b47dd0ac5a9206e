"""The convergence plan (tests/convergence/plan.py): seeded, reproducible, well formed."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.convergence.plan import (
    CATALOGUE,
    DEFAULT_PROVIDERS,
    INSIDE,
    INTERNAL,
    KINDS,
    POLLED,
    PROVIDERS,
    SYSTEM_KINDS,
    generate,
)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert generate(7, 300) == generate(7, 300)
    assert generate(7, 300).ops != generate(8, 300).ops


def test_a_plan_has_the_ops_asked_for_over_every_kind_action_and_system() -> None:
    plan = generate(1, 1000)
    assert len(plan.ops) == 1000
    assert [op.index for op in plan.ops] == list(range(1000))
    assert {op.kind for op in plan.ops} == set(KINDS)
    assert {op.action for op in plan.ops} == {"create", "update", "delete"}
    assert {op.system for op in plan.ops} == {*DEFAULT_PROVIDERS, INTERNAL}
    by_system = Counter(op.system for op in plan.ops)
    # QuickBooks and HubSpot take part at a smaller size.
    assert by_system["quickbooks"] < by_system["ascora"]
    assert by_system["hubspot"] < by_system["xero"]


def test_every_op_is_made_where_its_kind_is_kept_and_on_a_record_that_lives() -> None:
    plan = generate(2, 1000)
    live: dict[str, str] = {}
    for op in plan.ops:
        assert op.kind in SYSTEM_KINDS[op.system]
        if op.action == "create":
            assert op.key not in live
            for ref in op.refs.values():
                assert ref in live, f"#{op.index} names {ref} before it exists"
            live[op.key] = op.system
            continue
        assert op.key in live, f"#{op.index} {op.action} of {op.key}, which is not live"
        if op.system == INTERNAL:
            # Nothing is pushed to the internal service: it names only its own records.
            assert live[op.key] == INTERNAL
        if op.action == "delete":
            del live[op.key]


def test_a_record_is_never_deleted_while_a_live_record_names_it() -> None:
    plan = generate(3, 1000)
    refs: dict[str, set[str]] = {}
    for op in plan.ops:
        if op.action == "create":
            refs[op.key] = set(op.refs.values())
        elif op.action == "delete":
            del refs[op.key]
            assert all(op.key not in named for named in refs.values())


def test_kinds_limit_the_plan_and_references_to_kinds_left_out_are_not_made() -> None:
    plan = generate(4, 200, ["customer"])
    assert {op.kind for op in plan.ops} == {"customer"}
    jobs = generate(4, 200, ["job"])
    assert all(not op.refs for op in jobs.ops)
    with pytest.raises(ValueError, match="kinds"):
        generate(4, 10, ["widget"])  # type: ignore[list-item]


def test_faults_are_injected_429s_500s_dropped_webhooks_and_dead_letters() -> None:
    plan = generate(5, 1000)
    kinds = Counter(f.kind for f in plan.faults)
    assert set(kinds) == {"429", "500", "drop_webhook", "dead_letter"}
    assert all(f.system == INTERNAL for f in plan.faults if f.kind == "dead_letter")
    assert all(f.system in PROVIDERS for f in plan.faults if f.kind != "dead_letter")
    assert generate(5, 1000, faults=False).faults == ()
    # A CI-size plan still has its deliberate dead letter.
    assert any(f.kind == "dead_letter" for f in generate(5, 60).faults)


def test_fresh_values_never_write_a_value_twice() -> None:
    plan = generate(6, 1000, ["customer", "job"], fresh_values=True)
    written: Counter[tuple[str, str, object]] = Counter()
    for op in plan.ops:
        for name, value in op.values.items():
            if name != "status":
                written[(op.key, name, value)] += 1
    assert max(written.values()) == 1


def test_expected_state_follows_the_ops() -> None:
    plan = generate(9, 400, ["customer"], fresh_values=True)
    expected = plan.expected()
    last = {}
    for op in plan.ops:
        last.setdefault(op.key, {}).update(op.values)
        if op.action == "delete":
            last[op.key]["__deleted"] = True
    for key, (kind, values, alive) in expected.items():
        assert kind == "customer"
        assert alive == ("__deleted" not in last[key])
        assert values == {k: v for k, v in last[key].items() if k != "__deleted"}


def test_no_delete_is_made_in_a_system_that_is_polled() -> None:
    """MYOB's deletes show in no modified-since poll; deletes reach it from elsewhere."""
    plan = generate(7, 2_000, KINDS)
    polled = [op for op in plan.ops if op.system in POLLED]
    assert {op.action for op in polled} == {"create", "update"}
    assert any(op.action == "delete" for op in plan.ops if op.system not in POLLED)


def test_a_plan_for_some_providers_makes_ops_and_faults_only_there() -> None:
    # scripts/converge --providers ascora,xero connects those two and the internal service
    # alone: an op or fault planned in Stripe had nowhere to go (KeyError).
    plan = generate(11, 1000, providers=["ascora", "xero"])
    assert {op.system for op in plan.ops} == {"ascora", "xero", INTERNAL}
    assert {f.system for f in plan.faults} == {"ascora", "xero", INTERNAL}
    assert {op.kind for op in plan.ops} == set(KINDS)
    # The built-in providers (the default) plan as before: a seed keeps its plan.
    assert generate(11, 300, providers=DEFAULT_PROVIDERS) == generate(11, 300)
    with pytest.raises(ValueError, match="providers"):
        generate(11, 10, providers=["nosuch"])


def test_paypal_syncs_customers_but_none_is_made_or_edited_there() -> None:
    """PayPal's customers are its invoices' recipients (no customer API, no customer
    events): its connection syncs them, and its invoices name customers made elsewhere."""
    assert "customer" in SYSTEM_KINDS["paypal"]
    assert INSIDE["paypal"] == {"customer"}
    plan = generate(3, 1000, providers=["ascora", "paypal"])
    at_paypal = [op for op in plan.ops if op.system == "paypal"]
    assert not [op for op in at_paypal if op.kind == "customer"]
    assert any(op.kind == "invoice" and op.action == "create" for op in at_paypal)
    assert any(op.kind == "customer" for op in plan.ops)
    # Its recorded payments' removal is heard only by a full reconciliation: none there.
    assert not [op for op in at_paypal if op.kind == "payment" and op.action == "delete"]
    assert any(op.kind == "payment" and op.action == "delete" for op in plan.ops)


def test_the_catalogue_joins_when_named_with_customers_only_and_no_unheard_deletes() -> None:
    """The mapping-file providers are connected as the demo connects them (customers);
    Mailchimp's and WooCommerce's deletes send no mapped event, so none is made there."""
    assert not set(CATALOGUE) & set(DEFAULT_PROVIDERS)
    assert set(CATALOGUE) <= set(PROVIDERS)
    plan = generate(1, 2_000, providers=["ascora", *CATALOGUE])
    there = [op for op in plan.ops if op.system in CATALOGUE]
    assert {op.system for op in there} == set(CATALOGUE)
    assert {op.kind for op in there} == {"customer"}
    assert {op.kind for op in plan.ops} == set(KINDS)
    deleted = {op.system for op in there if op.action == "delete"}
    assert deleted == {"freshbooks", "mautic"}
    assert {f.system for f in plan.faults if f.kind != "dead_letter"} <= {"ascora", *CATALOGUE}
