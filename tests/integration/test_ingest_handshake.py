"""A provider's subscription handshake at ingest (FreshBooks' ``callback.verify``): the one
unsigned post ingest takes, and only for a connection whose mapping declares it and that
takes handshakes now. Its code is stored encrypted for the outbound service to confirm,
nothing goes to Kafka, and every other case is refused with its own status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from connectors.generic import CATALOGUE, load_mapping_file, mapping_settings
from crmsync.common.connections import create_connection
from services.ingest.handshakes import MAX_PENDING_HANDSHAKES
from tests.ingest_harness import Ingest, Tap

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def catalogue_settings(name: str = "freshbooks") -> dict[str, Any]:
    signature, mapping = load_mapping_file(CATALOGUE[name])
    return {
        "generic": signature.model_dump(mode="json"),
        "generic_mapping": mapping_settings(mapping),
    }


def verify_post(
    verifier: str = "Tz8rQ2vJpX9", callback: str = "2001", account: str = "6BApk"
) -> bytes:
    return urlencode(
        {
            "name": "callback.verify",
            "verifier": verifier,
            "object_id": callback,
            "account_id": account,
            "user_id": "1",
        }
    ).encode()


async def catalogue_connection(
    ingest: Ingest,
    *,
    awaiting: bool,
    secret: str | None = None,
    name: str = "freshbooks",
    **settings: Any,
) -> uuid.UUID:
    """A generic connection of the catalogue's ``name`` (FreshBooks unless said), with
    ``settings`` added to the mapping's."""
    async with ingest.pool.acquire() as conn:
        created = await create_connection(
            conn,
            ingest.keyring,
            tenant=f"t-{uuid.uuid4().hex[:10]}",
            provider="generic",
            name=name,
            webhook_secret=secret,
            settings={**catalogue_settings(name), **settings},
            handshakes_until=datetime.now(UTC) + timedelta(hours=1) if awaiting else None,
        )
    return created.id


async def post(ingest: Ingest, connection_id: uuid.UUID, body: bytes) -> Any:
    return await ingest.client.post(f"/webhooks/generic/{connection_id}", data=body, headers=FORM)


async def test_a_connection_awaiting_a_handshake_stores_its_code_encrypted(
    ingest: Ingest, raw_tap: Tap
) -> None:
    connection_id = await catalogue_connection(ingest, awaiting=True)

    answer = await post(ingest, connection_id, verify_post())

    assert answer.status == 202, await answer.text()
    row = await ingest.pool.fetchrow(
        "SELECT state, verifier_encrypted, placeholders FROM webhook_handshakes"
        " WHERE connection_id = $1",
        connection_id,
    )
    assert row["state"] == "pending"
    assert row["placeholders"] == {"account_id": "6BApk", "callback_id": "2001"}
    assert "Tz8rQ2vJpX9" not in row["verifier_encrypted"]
    # Not a secret yet: only the provider's acceptance of the code makes it one.
    assert await ingest.pool.fetchval("SELECT count(*) FROM webhook_secrets") == 0
    # Nothing for the processor: a handshake is no event.
    assert await raw_tap.nothing_for(str(connection_id).encode())


async def test_a_handshake_for_a_connection_not_awaiting_one_gets_409_and_changes_nothing(
    ingest: Ingest,
) -> None:
    connection_id = await catalogue_connection(ingest, awaiting=False, secret="live-verifier")

    answer = await post(ingest, connection_id, verify_post())

    assert answer.status == 409
    assert (await answer.json())["status"] == 409
    assert await ingest.pool.fetchval("SELECT count(*) FROM webhook_handshakes") == 0
    assert await ingest.pool.fetchval("SELECT count(*) FROM webhook_secrets") == 1


@pytest.mark.parametrize(
    "body",
    [
        verify_post(callback="../../users/clients/7"),
        verify_post(callback="2001/x"),
        urlencode({"name": "callback.verify", "object_id": "2001", "account_id": "6BApk"}).encode(),
        verify_post(verifier="has space"),
    ],
    ids=["dot-dot-path", "slash", "no-verifier", "code-with-space"],
)
async def test_a_malformed_handshake_gets_422_and_stores_nothing(
    ingest: Ingest, body: bytes
) -> None:
    connection_id = await catalogue_connection(ingest, awaiting=True)

    answer = await post(ingest, connection_id, body)

    assert answer.status == 422
    assert "handshake" in (await answer.json())["detail"]
    assert await ingest.pool.fetchval("SELECT count(*) FROM webhook_handshakes") == 0


async def test_unconfirmed_handshakes_are_bounded_per_connection(ingest: Ingest) -> None:
    connection_id = await catalogue_connection(ingest, awaiting=True)
    for n in range(MAX_PENDING_HANDSHAKES):
        assert (await post(ingest, connection_id, verify_post(f"code-{n}", str(n)))).status == 202

    answer = await post(ingest, connection_id, verify_post("one-too-many", "99"))

    assert answer.status == 429
    assert answer.headers["Retry-After"] == "60"
    count = "SELECT count(*) FROM webhook_handshakes"
    assert await ingest.pool.fetchval(count) == MAX_PENDING_HANDSHAKES


async def test_an_unsigned_event_of_an_awaiting_connection_is_still_a_401(
    ingest: Ingest, raw_tap: Tap
) -> None:
    connection_id = await catalogue_connection(ingest, awaiting=True)
    body = urlencode({"name": "client.create", "object_id": "12", "account_id": "6BApk"})

    answer = await post(ingest, connection_id, body.encode())

    assert answer.status == 401
    assert await raw_tap.nothing_for(str(connection_id).encode())


async def test_a_mapping_without_a_handshake_takes_none(ingest: Ingest) -> None:
    connection_id = await catalogue_connection(ingest, awaiting=True, name="mautic")

    answer = await post(ingest, connection_id, verify_post())

    assert answer.status == 401
    assert await ingest.pool.fetchval("SELECT count(*) FROM webhook_handshakes") == 0


async def test_a_handshake_naming_another_account_gets_403_and_stores_nothing(
    ingest: Ingest,
) -> None:
    """The connection is FreshBooks account 6BApk (its setting freshbooks_account_id): a
    handshake for another account's callback is not this connection's to confirm."""
    connection_id = await catalogue_connection(ingest, awaiting=True, freshbooks_account_id="6BApk")

    answer = await post(ingest, connection_id, verify_post(account="Zq0t9"))

    assert answer.status == 403, await answer.text()
    assert answer.content_type == "application/problem+json"
    problem = await answer.json()
    assert problem["status"] == 403
    assert "Zq0t9" in problem["detail"]
    assert "6BApk" in problem["detail"]
    assert await ingest.pool.fetchval("SELECT count(*) FROM webhook_handshakes") == 0
    # Its own account's handshake is taken.
    answer = await post(ingest, connection_id, verify_post())
    assert answer.status == 202, await answer.text()
