"""QuickBooks' read-back of our earlier push, reaching us after a later push (issue 17).

Two versions of a record are pushed to QuickBooks within one second. QuickBooks' thin
webhook for the first write is hydrated before the second lands, so it reads the first
write's state, and that state reaches the processor after the second push. QuickBooks
stamps whole seconds, so the state is not older than the link's newest (not stale), and
it is not what we pushed last: it was taken for a QuickBooks user's edit newer than the
origin's, and the old value was pushed everywhere (the convergence runner's seed 1 c46
and seed 2 p14, README "The lost edit left"). The link remembers its last few pushes;
a state equal to one of them, stamped no later than the write that replaced it, is that
write of ours read back. Since the read-back carries QuickBooks' SyncToken (a counter
every write raises), a state at a lower SyncToken than the link heard is simply older
(stale), and one at a higher SyncToken than our last write is a user's write, however
its stamp reads (rule 5a's ambiguous case: a revert in the second of our last write).

Real PostgreSQL and Kafka, the QuickBooks simulator (its clock held in one second) behind
the real QuickBooks client and the outbound pusher; the read-back goes to the processor
as a hydrated webhook does, a ``changes.normalized`` message, through both apply paths.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from connectors.registry import connector
from connectors.spec import RemoteRecord
from crmsync.application.sync.runner import change_message
from crmsync.common.canonical import canonical_values, state_hash
from schemas import topics
from services.processor.apply import Applied, link_pushes
from services.processor.deadletters import Source
from services.processor.decide import Outcome, Pushed
from services.processor.pipeline import Processor
from tests.integration import test_push_overwrite
from tests.integration.test_push_overwrite import CUSTOMER, Env, _info

# The push-overwrite tests' stack: the QuickBooks simulator (our clock, below), the real
# client and pusher, an internal origin.
env = test_push_overwrite.env

SECOND_PHONE = "+61 2 5550 2"  # the origin's edit, pushed in the same QuickBooks second
_offsets = itertools.count()


class Clock:
    """QuickBooks' clock, moved by the test: a minute ahead of ours, so its whole-second
    stamps are newer than the origin's edits, as in the runs that lost the edit (the
    QuickBooks second 22:38:45 after Ascora's 22:38:44.897)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def provider() -> str:
    return "quickbooks"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim_options(clock: Clock) -> dict[str, Any]:
    return {"clock": clock}


def read_back(env: Env) -> RemoteRecord:
    """The customer as QuickBooks holds it now, as the hydration of its webhook reads it."""
    [customer] = env.qb.sim.live("customer")
    return connector("quickbooks").mapper.to_canonical("customer", copy.deepcopy(customer), {})


async def deliver(env: Env, record: RemoteRecord, *, set_based: bool) -> Applied:
    """``record`` reaches the processor as a hydrated QuickBooks webhook does."""
    value = change_message(await _info(env), "customer", record, datetime.now(UTC))
    source = Source(topics.CHANGES_NORMALIZED.name, 0, next(_offsets), b"k", value)
    [applied] = await Processor(env.pool, set_based=set_based).handle(
        topics.CHANGES_NORMALIZED.name, [source]
    )
    assert applied is not None
    return applied


async def logged(env: Env) -> list[tuple[str, str | None]]:
    """The sync log's inbound rows of QuickBooks, oldest first: outcome and rule."""
    rows = await env.pool.fetch(
        "SELECT outcome, rule FROM sync_log WHERE connection_id = $1 AND direction = 'in'"
        " ORDER BY id",
        env.target,
    )
    return [(r["outcome"], r["rule"]) for r in rows]


def rule_count(rule: str) -> float:
    return REGISTRY.get_sample_value("crmsync_processor_rules_total", {"rule": rule}) or 0.0


async def outbox(env: Env) -> int:
    return int(
        await env.pool.fetchval("SELECT count(*) FROM outbox WHERE tenant_id = $1", env.tenant_id)
    )


async def two_pushes_in_one_second(env: Env) -> RemoteRecord:
    """Our first and second writes of the customer, in one QuickBooks second; returns
    QuickBooks' read of the first, made before the second landed."""
    await env.publish(1, CUSTOMER)
    assert await env.push() == 1
    first = read_back(env)
    await env.publish(2, {**CUSTOMER, "phone": SECOND_PHONE})
    assert await env.push() == 1
    assert env.at_quickbooks()["phone"] == SECOND_PHONE
    assert first.updated_at == read_back(env).updated_at
    return first


async def link_version(env: Env) -> str | None:
    version: str | None = await env.pool.fetchval(
        "SELECT remote_version FROM entity_links WHERE connection_id = $1", env.target
    )
    return version


@pytest.mark.parametrize("set_based", [True, False], ids=["set_based", "one_by_one"])
async def test_a_read_back_of_our_earlier_push_at_its_lower_sync_token_is_stale(
    env: Env, set_based: bool
) -> None:
    first = await two_pushes_in_one_second(env)
    assert (first.version, await link_version(env)) == ("0", "1")  # our writes' answers
    emitted = await outbox(env)

    applied = await deliver(env, first, set_based=set_based)
    assert applied.outcome == Outcome.STALE
    assert (await env.here())["phone"] == SECOND_PHONE
    assert await outbox(env) == emitted
    assert await env.push() == 0
    assert await link_version(env) == "1"
    # QuickBooks' read-back of the second write, at its own SyncToken: our echo.
    assert (await deliver(env, read_back(env), set_based=set_based)).outcome == Outcome.ECHO
    assert await outbox(env) == emitted


@pytest.mark.parametrize("set_based", [True, False], ids=["set_based", "one_by_one"])
async def test_a_users_write_in_our_last_writes_second_at_a_higher_sync_token_applies(
    env: Env, set_based: bool
) -> None:
    """A QuickBooks user sets the phone back to our first write's, in the same second as
    our second write: the same values and stamp as that first write's read-back, which
    rule 5a alone took for our echo (the edit was lost). Its SyncToken, above our last
    write's, says it came after."""
    await two_pushes_in_one_second(env)
    [customer] = env.qb.sim.live("customer")
    env.qb.sim.update(
        "customer",
        customer["Id"],
        {"PrimaryPhone": {"FreeFormNumber": CUSTOMER["phone"]}, "sparse": True},
    )
    revert = read_back(env)
    assert revert.version == "2"
    emitted = await outbox(env)

    applied = await deliver(env, revert, set_based=set_based)
    assert applied.outcome == Outcome.APPLIED
    assert (await env.here())["phone"] == CUSTOMER["phone"]
    assert await outbox(env) == emitted + 1
    assert await link_version(env) == "2"  # the newest SyncToken heard, for the next


@pytest.mark.parametrize("set_based", [True, False], ids=["set_based", "one_by_one"])
async def test_a_read_back_of_our_earlier_push_after_a_later_one_is_our_echo(
    env: Env, set_based: bool
) -> None:
    """The same read-back in a message that carries no SyncToken (one written before the
    field): rule 5a, by the stamps of our writes."""
    await env.publish(1, CUSTOMER)
    assert await env.push() == 1
    # QuickBooks' webhook for that write is hydrated now, before the next write lands...
    first = dataclasses.replace(read_back(env), version=None)
    await env.publish(2, {**CUSTOMER, "phone": SECOND_PHONE})
    assert await env.push() == 1
    assert env.at_quickbooks()["phone"] == SECOND_PHONE
    # ... in the same QuickBooks second, so nothing in its stamp says it is older.
    assert first.updated_at == read_back(env).updated_at
    emitted = await outbox(env)
    earlier_before = rule_count("earlier_push")

    # The read-back reaches the processor after the second push: our own write, an echo.
    applied = await deliver(env, first, set_based=set_based)
    assert applied.outcome == Outcome.ECHO
    assert (await env.here())["phone"] == SECOND_PHONE
    assert await outbox(env) == emitted  # nothing goes anywhere
    assert await env.push() == 0
    # QuickBooks' read-back of the second write, when it comes, is an echo too.
    assert (await deliver(env, read_back(env), set_based=set_based)).outcome == Outcome.ECHO
    assert await outbox(env) == emitted
    # An operator tells the two apart: the sync log and the metric name the rule (5a,
    # then 5); the outcome stays echo, which the ledger counts.
    assert await logged(env) == [("echo", "earlier_push"), ("echo", "echo")]
    assert rule_count("earlier_push") == earlier_before + 1


@pytest.mark.parametrize("set_based", [True, False], ids=["set_based", "one_by_one"])
async def test_a_users_revert_to_our_earlier_push_after_our_last_write_applies(
    env: Env, clock: Clock, set_based: bool
) -> None:
    """The same values as our first push, made by a QuickBooks user in a later second than
    our last write: an edit, which every system takes (the revert the echo rule must not
    swallow)."""
    await env.publish(1, CUSTOMER)
    await env.push()
    await env.publish(2, {**CUSTOMER, "phone": SECOND_PHONE})
    await env.push()
    clock.now += timedelta(seconds=1)
    [customer] = env.qb.sim.live("customer")
    env.qb.sim.update(
        "customer",
        customer["Id"],
        {"PrimaryPhone": {"FreeFormNumber": CUSTOMER["phone"]}, "sparse": True},
    )
    emitted = await outbox(env)

    applied = await deliver(env, read_back(env), set_based=set_based)
    assert applied.outcome == Outcome.APPLIED
    assert (await env.here())["phone"] == CUSTOMER["phone"]
    assert await outbox(env) == emitted + 1


async def test_a_link_remembers_its_last_five_writes_with_their_stamps(
    env: Env, clock: Clock
) -> None:
    """Bounded: the oldest write is forgotten beyond five (migration 0022), the last one is
    the link's last push, and each write keeps the stamp QuickBooks' answer gave it."""
    phones = [f"+61 2 5550 {n}" for n in range(1, 8)]
    for n, phone in enumerate(phones, start=1):
        await env.publish(n, {**CUSTOMER, "phone": phone})
        assert await env.push() == 1
        clock.now += timedelta(seconds=1)
    link = await env.pool.fetchrow(
        "SELECT last_pushed_hash, pushed_updated_at, pushes FROM entity_links"
        " WHERE connection_id = $1",
        env.target,
    )
    pushes = link_pushes(link["pushes"])
    assert len(pushes) == 5
    assert len({p.state_hash for p in pushes}) == 5  # five different phones
    assert pushes[-1] == Pushed(link["last_pushed_hash"], link["pushed_updated_at"])
    stamps = [p.updated_at for p in pushes]
    assert stamps == [clock.now - timedelta(seconds=s) for s in range(5, 0, -1)]
    # The last is the state QuickBooks holds: the last phone's.
    held = read_back(env)
    assert held.data["phone"] == phones[-1]
    assert pushes[-1].state_hash == state_hash(canonical_values("customer", dict(held.data)))
