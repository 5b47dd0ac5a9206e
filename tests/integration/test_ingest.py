"""Ingest against the real Kafka and PostgreSQL: what is verified lands, byte for byte."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from connectors.generic import GenericSchemeConfig
from crmsync.common.connections import CreatedConnection
from schemas.changes import InternalChange
from schemas.envelope import WebhookEnvelope
from services.ingest.app import CACHE, PRODUCER
from tests.ingest_harness import PUBLIC_BASE, Ingest, Tap, running_ingest
from tests.signing import sign

GENERIC = GenericSchemeConfig(
    signature_header="x-hub-signature-256",
    prefix="sha256=",
    encoding="hex",
    event_id_header="x-delivery-id",
)

# Every webhook provider with a secret in its own format; Stripe's is a whsec_ string.
SECRETS = {
    "stripe": "whsec_" + "s" * 32,
    "standard-webhooks": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "ascora": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "xero": "xero-webhook-key-" + "x" * 20,
    "quickbooks": "qbo-verifier-token-" + "q" * 20,
    "hubspot": "hubspot-client-secret-" + "h" * 16,
    "shopify": "shopify-app-secret-" + "p" * 20,
    "square": "square-signature-key-" + "q" * 20,
    "generic": "generic-secret-" + "g" * 20,
}
PROVIDERS = tuple(SECRETS)
TIMESTAMPED = ("stripe", "standard-webhooks", "ascora", "hubspot")


def body_for(provider: str) -> bytes:
    if provider == "stripe":
        return b'{"id": "evt_123", "type": "customer.updated", "data": {"object": {}}}'
    if provider == "xero":
        return json.dumps(
            {
                "events": [
                    {
                        "resourceId": str(uuid.uuid4()),
                        "eventCategory": "CONTACT",
                        "eventType": "UPDATE",
                        "tenantId": str(uuid.uuid4()),
                        "eventDateUtc": "2026-11-21T10:00:00.000",
                    }
                ],
                "firstEventSequence": 1,
                "lastEventSequence": 1,
                "entropy": "ABC",
            }
        ).encode()
    if provider == "hubspot":
        return b'[{"eventId": 42, "objectId": 7, "subscriptionType": "contact.propertyChange"}]'
    # Not ASCII-only on purpose: the bytes must arrive untouched.
    return '{"id": "x-1", "name": "Zoë Ünicode"}'.encode()


async def _connect(ingest: Ingest, provider: str, secret: str | None = None) -> CreatedConnection:
    settings = {"generic": GENERIC.model_dump(mode="json")} if provider == "generic" else None
    return await ingest.connect(provider, secret or SECRETS[provider], settings=settings)


def _path(provider: str, conn: CreatedConnection) -> str:
    return f"/webhooks/{provider}/{conn.id}"


async def _connected(ingest: Ingest, provider: str) -> tuple[CreatedConnection, bytes, str]:
    """A new ``provider`` connection, a webhook body of its, and the path ingest takes it at."""
    conn = await _connect(ingest, provider)
    return conn, body_for(provider), _path(provider, conn)


def _headers(
    provider: str, secret: str, body: bytes, path: str, *, now: float | None = None, **kw: Any
) -> dict[str, str]:
    return sign(
        provider,
        secret,
        body,
        now=time.time() if now is None else now,
        url=PUBLIC_BASE + path,
        generic_config=GENERIC if provider == "generic" else None,
        **kw,
    )


async def _post(ingest: Ingest, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return await ingest.client.post(path, data=body, headers=headers)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_verified_webhook_lands_in_kafka_byte_for_byte(
    ingest: Ingest, raw_tap: Tap, provider: str
) -> None:
    conn, body, path = await _connected(ingest, provider)
    resp = await _post(ingest, path, body, _headers(provider, SECRETS[provider], body, path))
    assert resp.status == 200, await resp.text()

    key = str(conn.id).encode()
    records = await raw_tap.read(key, 1)
    assert len(records) == 1
    envelope = WebhookEnvelope.model_validate_json(records[0].value)
    # Exactly the bytes pydantic writes for the envelope, in the partition Kafka's default
    # partitioner (Java's murmur2) gives the connection id.
    assert records[0].value == envelope.model_dump_json().encode()
    partitions = sorted(raw_tap.consumer.partitions_for_topic(raw_tap.topic))
    assert records[0].partition == DefaultPartitioner()(key, partitions, partitions)
    assert envelope.body == body
    assert (envelope.provider, envelope.connection_id) == (provider, conn.id)
    assert envelope.tenant_id == conn.tenant_id
    assert envelope.provider_event_id
    assert envelope.content_type == "application/json"
    assert not any("signature" in h or "hmac" in h for h in envelope.headers)


async def test_a_producer_the_broker_refuses_as_out_of_order_is_renewed_and_the_webhook_lands(
    ingest: Ingest, raw_tap: Tap
) -> None:
    """After a Kafka restart the broker may not know the producer's sequence any more: an
    idempotent producer then answers OutOfOrderSequenceNumber for ever (aiokafka #1017), so
    ingest answered 503 to every webhook until it was restarted. Here the producer's
    sequence is pushed ahead of the broker's, which the broker refuses the same way; the
    request is sent again through a new producer, and answered 200 once Kafka acked it."""
    conn = await _connect(ingest, "stripe")
    path, key = _path("stripe", conn), str(conn.id).encode()
    first = b'{"id": "evt_1", "type": "customer.updated", "data": {"object": {}}}'
    resp = await _post(ingest, path, first, _headers("stripe", SECRETS["stripe"], first, path))
    assert resp.status == 200, await resp.text()
    (landed,) = await raw_tap.read(key, 1)
    renewable = ingest.client.server.app[PRODUCER]
    broken = renewable.producer
    # The broker's record of this producer and partition no longer matches.
    broken._txn_manager._sequence_numbers[TopicPartition(raw_tap.topic, landed.partition)] += 1000
    second = b'{"id": "evt_2", "type": "customer.updated", "data": {"object": {}}}'
    resp = await _post(ingest, path, second, _headers("stripe", SECRETS["stripe"], second, path))
    assert resp.status == 200, await resp.text()
    assert renewable.producer is not broken
    (again,) = await raw_tap.read(key, 1)
    assert WebhookEnvelope.model_validate_json(again.value).body == second


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_duplicate_delivery_carries_the_same_provider_event_id(
    ingest: Ingest, raw_tap: Tap, provider: str
) -> None:
    conn, body, path = await _connected(ingest, provider)
    headers = _headers(provider, SECRETS[provider], body, path)
    for _ in range(2):
        assert (await _post(ingest, path, body, headers)).status == 200
    records = await raw_tap.read(str(conn.id).encode(), 2)
    ids = {WebhookEnvelope.model_validate_json(r.value).provider_event_id for r in records}
    event_ids = {WebhookEnvelope.model_validate_json(r.value).event_id for r in records}
    assert len(records) == 2
    assert len(ids) == 1
    assert len(event_ids) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("attack", ["tampered_body", "wrong_secret", "no_signature"])
async def test_bad_signature_gets_401_and_produces_nothing(
    ingest: Ingest, raw_tap: Tap, provider: str, attack: str
) -> None:
    conn, body, path = await _connected(ingest, provider)
    secret = SECRETS[provider] if attack != "wrong_secret" else "whsec_" + "w" * 32
    headers = _headers(provider, secret, body, path)
    if attack == "tampered_body":
        body = body.replace(b"1", b"2", 1) if b"1" in body else body + b" "
    if attack == "no_signature":
        headers = {"content-type": "application/json"}
    resp = await _post(ingest, path, body, headers)
    assert resp.status == 401
    if provider == "xero":
        assert await resp.read() == b""
    assert await raw_tap.nothing_for(str(conn.id).encode())


@pytest.mark.parametrize("provider", TIMESTAMPED)
async def test_rejects_stale_timestamp(ingest: Ingest, raw_tap: Tap, provider: str) -> None:
    conn, body, path = await _connected(ingest, provider)
    stale = _headers(provider, SECRETS[provider], body, path, now=time.time() - 3600)
    assert (await _post(ingest, path, body, stale)).status == 401
    assert await raw_tap.nothing_for(str(conn.id).encode())


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_rotation_both_secrets_verify_then_the_old_one_expires(
    ingest: Ingest, raw_tap: Tap, provider: str
) -> None:
    conn, body, path = await _connected(ingest, provider)
    old, new = SECRETS[provider], SECRETS[provider][:-4] + "NEW1"
    await ingest.rotate(conn.id, new, datetime.now(UTC) + timedelta(hours=1))
    for secret in (old, new):
        resp = await _post(ingest, path, body, _headers(provider, secret, body, path))
        assert resp.status == 200, secret

    await ingest.rotate(conn.id, new[:-4] + "NEW2", datetime.now(UTC) - timedelta(seconds=1))
    # Expiring a secret early takes effect at the next periodic reload
    # (CRMSYNC_INGEST_CONNECTION_REFRESH_SECONDS); run that reload now.
    assert await ingest.client.app[CACHE].refresh()
    assert (await _post(ingest, path, body, _headers(provider, old, body, path))).status == 401
    # Exactly the two accepted deliveries landed; the refused one did not.
    assert len(await raw_tap.read(str(conn.id).encode(), 3, within=2.0)) == 2


async def test_logs_carry_no_secret_signature_or_body(
    ingest: Ingest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn = await _connect(ingest, "stripe")
    path = _path("stripe", conn)
    body = b'{"id": "evt_private", "email": "secret-customer@example.com"}'
    good = _headers("stripe", SECRETS["stripe"], body, path)
    bad = _headers("stripe", "whsec_" + "b" * 32, body, path)
    assert (await _post(ingest, path, body, good)).status == 200
    assert (await _post(ingest, path, body, bad)).status == 401
    logged = "\n".join(
        f"{r.getMessage()} {sorted(vars(r).items(), key=str)}" for r in caplog.records
    )
    assert "signature refused" in logged  # the failure itself is logged...
    for leak in (SECRETS["stripe"], good["stripe-signature"], bad["stripe-signature"]):
        assert leak not in logged  # ...without what would let anyone forge or replay
    assert "secret-customer@example.com" not in logged


async def test_a_burst_for_one_connection_lands_whole_and_in_order(
    ingest: Ingest, raw_tap: Tap
) -> None:
    """More at once than one producer batch of aiokafka's default size holds, then one by
    one: all acknowledged, all in the connection's one partition, the sequential ones in
    the order they were answered."""
    conn = await _connect(ingest, "stripe")
    path = _path("stripe", conn)

    def body(i: int) -> bytes:
        return json.dumps({"id": f"evt_{i}", "pad": "p" * 1500}).encode()

    def post(i: int) -> Any:
        return _post(ingest, path, body(i), _headers("stripe", SECRETS["stripe"], body(i), path))

    burst = await asyncio.gather(*(post(i) for i in range(60)))
    assert [r.status for r in burst] == [200] * 60
    for i in range(60, 70):
        assert (await post(i)).status == 200

    records = await raw_tap.read(str(conn.id).encode(), 70)
    ids = [WebhookEnvelope.model_validate_json(r.value).provider_event_id for r in records]
    assert len({r.partition for r in records}) == 1
    assert sorted(ids[:60]) == sorted(f"evt_{i}" for i in range(60))
    assert ids[60:] == [f"evt_{i}" for i in range(60, 70)]


async def test_a_connection_id_in_another_spelling_finds_the_connection(
    ingest: Ingest, raw_tap: Tap
) -> None:
    conn = await _connect(ingest, "stripe")
    body = body_for("stripe")
    for spelling in (str(conn.id).upper(), conn.id.hex):
        path = f"/webhooks/stripe/{spelling}"
        resp = await _post(ingest, path, body, _headers("stripe", SECRETS["stripe"], body, path))
        assert resp.status == 200, spelling
    assert len(await raw_tap.read(str(conn.id).encode(), 2)) == 2


async def test_changed_signature_settings_apply_after_the_next_reload(
    ingest: Ingest, raw_tap: Tap
) -> None:
    """The connector built from a connection's settings is remembered, but only until the
    cache reloads: a generic connection whose header changed verifies the new way."""
    conn = await _connect(ingest, "generic")
    path, body = _path("generic", conn), body_for("generic")
    old = _headers("generic", SECRETS["generic"], body, path)
    assert (await _post(ingest, path, body, old)).status == 200

    moved = GENERIC.model_copy(update={"signature_header": "x-signature"})
    async with ingest.pool.acquire() as db:
        await db.execute(
            "UPDATE connections SET settings = $2 WHERE id = $1",
            conn.id,
            {"generic": moved.model_dump(mode="json")},
        )
    assert await ingest.client.app[CACHE].refresh()
    new = sign(
        "generic",
        SECRETS["generic"],
        body,
        now=time.time(),
        url=PUBLIC_BASE + path,
        generic_config=moved,
    )
    assert "x-signature" in new
    assert (await _post(ingest, path, body, old)).status == 401
    assert (await _post(ingest, path, body, new)).status == 200
    assert len(await raw_tap.read(str(conn.id).encode(), 3, within=2.0)) == 2


async def test_unknown_provider_and_unknown_connection_look_the_same(ingest: Ingest) -> None:
    conn = await _connect(ingest, "stripe")
    body = body_for("stripe")
    answers = []
    for path in (
        f"/webhooks/nosuch/{conn.id}",
        f"/webhooks/stripe/{uuid.uuid4()}",
        "/webhooks/stripe/not-a-uuid",
        f"/webhooks/shopify/{conn.id}",  # a real connection, but of another provider
    ):
        resp = await _post(ingest, path, body, _headers("stripe", SECRETS["stripe"], body, path))
        answers.append((resp.status, await resp.json()))
    assert all(a == answers[0] for a in answers)
    assert answers[0][0] == 404


async def test_oversized_body_gets_413(
    database_url: str, kafka_bootstrap: str, pipeline_topics: None
) -> None:
    async for ingest in running_ingest(database_url, kafka_bootstrap, ingest_max_body_bytes=4096):
        conn = await _connect(ingest, "stripe")
        path = _path("stripe", conn)
        just_fits = b'{"id": "evt_1", "pad": "' + b"a" * (4096 - 26) + b'"}'
        assert len(just_fits) == 4096
        ok = await _post(
            ingest, path, just_fits, _headers("stripe", SECRETS["stripe"], just_fits, path)
        )
        assert ok.status == 200
        big = just_fits + b" "
        resp = await _post(ingest, path, big, _headers("stripe", SECRETS["stripe"], big, path))
        assert resp.status == 413
        assert (await resp.json())["status"] == 413


async def test_a_body_at_the_limit_lands_whole(ingest: Ingest, raw_tap: Tap) -> None:
    """A body of the default 1 MiB limit makes a ~1.4 MiB envelope (base64). Kafka's default
    1 MiB record limit refused it and the provider got 503 for ever; webhooks.raw now takes
    it, and a consumer with default fetch sizes reads it back."""
    conn = await _connect(ingest, "stripe")
    path = _path("stripe", conn)
    limit = ingest.settings.ingest_max_body_bytes
    assert limit == 1024 * 1024
    head = b'{"id": "evt_big", "pad": "'
    body = head + os.urandom(limit).hex().encode()[: limit - len(head) - 2] + b'"}'
    assert len(body) == limit
    resp = await _post(ingest, path, body, _headers("stripe", SECRETS["stripe"], body, path))
    assert resp.status == 200, await resp.text()

    (record,) = await raw_tap.read(str(conn.id).encode(), 1)
    assert len(record.value) > 1024 * 1024
    assert WebhookEnvelope.model_validate_json(record.value).body == body


async def test_an_overlong_content_type_gets_400_naming_it(ingest: Ingest, raw_tap: Tap) -> None:
    """Verified, but the envelope cannot carry it: a clear 400, not a 500 the provider
    would retry for ever."""
    conn = await _connect(ingest, "stripe")
    path, body = _path("stripe", conn), body_for("stripe")
    headers = _headers("stripe", SECRETS["stripe"], body, path)
    headers["Content-Type"] = "application/json; charset=utf-8; x=" + "y" * 300
    resp = await _post(ingest, path, body, headers)
    assert resp.status == 400
    problem = await resp.json()
    assert "Content-Type header" in problem["detail"]
    assert "256" in problem["detail"]
    assert await raw_tap.nothing_for(str(conn.id).encode())


@pytest.mark.parametrize(
    ("provider", "header", "named"),
    [
        ("shopify", "x-shopify-webhook-id", "headers"),
        ("shopify", "x-shopify-topic", "headers"),
        ("stripe", "content-type", "Content-Type header"),
    ],
)
async def test_a_kept_header_that_is_not_utf8_gets_400_naming_it(
    ingest: Ingest, raw_tap: Tap, provider: str, header: str, named: str
) -> None:
    """A verified body with an unsigned header the envelope cannot carry as text (found by
    scripts/fuzz: a 500, which the provider would retry for ever)."""
    conn, body, path = await _connected(ingest, provider)
    headers = _headers(provider, SECRETS[provider], body, path)
    headers = {k: v for k, v in headers.items() if k.lower() != header} | {header: "id-\x80"}
    server = ingest.client.server
    http_conn = http.client.HTTPConnection(str(server.host), int(server.port or 0), timeout=10)
    try:
        # http.client sends the value as latin-1: the byte 0x80, which is not UTF-8.
        await asyncio.to_thread(http_conn.request, "POST", path, body, headers)
        resp = await asyncio.to_thread(http_conn.getresponse)
        status, problem = resp.status, json.loads(resp.read())
    finally:
        http_conn.close()
    assert status == 400, problem
    assert named in problem["detail"]
    assert await raw_tap.nothing_for(str(conn.id).encode())


async def test_wrong_method_gets_405_with_allow(ingest: Ingest) -> None:
    conn = await _connect(ingest, "stripe")
    resp = await ingest.client.get(_path("stripe", conn))
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert resp.headers["Content-Type"].startswith("application/problem+json")


async def test_xero_intent_to_receive(ingest: Ingest, raw_tap: Tap) -> None:
    conn = await _connect(ingest, "xero")
    path = _path("xero", conn)
    itr = b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"QWERTY"}'
    good = await _post(ingest, path, itr, _headers("xero", SECRETS["xero"], itr, path))
    bad = await _post(ingest, path, itr, _headers("xero", "not-the-key", itr, path))
    assert (good.status, await good.read()) == (200, b"")
    assert (bad.status, await bad.read()) == (401, b"")
    assert await raw_tap.nothing_for(str(conn.id).encode())


# -- internal changes -------------------------------------------------------------------


def _change(**overrides: Any) -> dict[str, Any]:
    change: dict[str, Any] = {
        "event_id": f"chg-{uuid.uuid4().hex[:8]}",
        "entity_type": "customer",
        "op": "upsert",
        "external_id": "cust-1",
        "occurred_at": "2026-11-21T10:00:00Z",
        "data": {"name": "Acme Plumbing", "email": "ops@acme.example"},
    }
    change.update(overrides)
    return change


async def _internal(ingest: Ingest) -> CreatedConnection:
    conn = await ingest.connect("internal", None)
    assert conn.api_key
    return conn


async def test_internal_change_single_and_batch_are_accepted(
    ingest: Ingest, changes_tap: Tap
) -> None:
    conn = await _internal(ingest)
    auth = {"Authorization": f"Bearer {conn.api_key}"}
    one = await ingest.client.post("/v1/changes", json=_change(), headers=auth)
    assert one.status == 202, await one.text()
    batch = [_change(external_id=f"cust-{i}") for i in range(2, 12)]
    many = await ingest.client.post("/v1/changes", json=batch, headers=auth)
    assert (many.status, (await many.json())["accepted"]) == (202, 10)

    key = f"{conn.tenant_id}:customer:cust-5".encode()
    (record,) = await changes_tap.read(key, 1)
    event = InternalChange.model_validate_json(record.value)
    assert (event.tenant_id, event.connection_id) == (conn.tenant_id, conn.id)
    assert event.change.external_id == "cust-5"


async def test_internal_change_invalid_gets_422_naming_the_field(ingest: Ingest) -> None:
    conn = await _internal(ingest)
    auth = {"Authorization": f"Bearer {conn.api_key}"}
    resp = await ingest.client.post(
        "/v1/changes", json=[_change(), _change(entity_type="spaceship")], headers=auth
    )
    body = await resp.json()
    assert resp.status == 422
    assert any(e["loc"].endswith("/1/entity_type") for e in body["errors"]), body
    unknown = await ingest.client.post("/v1/changes", json=_change(surprise=1), headers=auth)
    assert unknown.status == 422
    too_many = [_change() for _ in range(501)]
    assert (await ingest.client.post("/v1/changes", json=too_many, headers=auth)).status == 422
    not_json = await ingest.client.post("/v1/changes", data=b"{nope", headers=auth)
    assert not_json.status == 400


async def test_internal_change_with_a_nul_character_gets_422_naming_the_field(
    ingest: Ingest,
) -> None:
    # PostgreSQL stores no U+0000 in text or jsonb: such a change could never be applied,
    # so it is refused at the door instead of being accepted and dead-lettered later.
    conn = await _internal(ingest)
    auth = {"Authorization": f"Bearer {conn.api_key}"}
    cases = {
        "/0/data/name": [_change(data={"name": "Ac\x00me"})],
        "/1/external_id": [_change(), _change(external_id="c\x00-1")],
        "/0/data/notes/0/text": [_change(data={"notes": [{"text": "\x00"}]})],
        "/0/data/bad\x00key": [_change(data={"bad\x00key": "x"})],
    }
    for loc, body in cases.items():
        resp = await ingest.client.post("/v1/changes", json=body, headers=auth)
        assert resp.status == 422, (loc, await resp.text())
        problem = await resp.json()
        assert [e["loc"] for e in problem["errors"]] == [loc], problem
        assert problem["errors"][0]["type"] == "nul_character"
    # A backslash followed by "u0000" is six ordinary characters, not a NUL.
    literal = await ingest.client.post(
        "/v1/changes", json=_change(data={"name": "C:\\u0000"}), headers=auth
    )
    assert literal.status == 202, await literal.text()


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


# Bodies the parser must refuse with 400, never a 500 or an accepted event: nesting far
# beyond the limit (json.loads raised RecursionError here), nesting just past it (which
# json.loads accepted, leaving it to blow the stack of whatever recursed over it next),
# and numbers JSON does not have (pydantic wrote NaN into the event as null).
NOT_JSON_BODIES = {
    "array-nested-400k-deep": b"[" * 400_000 + b"]" * 400_000,
    "object-nested-300-deep-in-data": (
        '{"event_id": "e1", "entity_type": "customer", "op": "upsert", "external_id": "c1", '
        f'"occurred_at": "2026-11-21T10:00:00Z", "data": {{"notes": {_nested(300)}}}}}'
    ).encode(),
    "nan": (
        b'{"event_id": "e1", "entity_type": "customer", "op": "upsert", "external_id": "c1", '
        b'"occurred_at": "2026-11-21T10:00:00Z", "data": {"score": NaN}}'
    ),
}


@pytest.mark.parametrize("body", NOT_JSON_BODIES.values(), ids=NOT_JSON_BODIES.keys())
async def test_internal_change_too_deeply_nested_or_not_json_gets_400_problem(
    ingest: Ingest, body: bytes
) -> None:
    conn = await _internal(ingest)
    auth = {"Authorization": f"Bearer {conn.api_key}", "Content-Type": "application/json"}
    resp = await ingest.client.post("/v1/changes", data=body, headers=auth)
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert (problem["status"], problem["title"]) == (400, "Bad Request")
    assert problem["detail"].startswith("body is not JSON")


async def test_internal_change_bad_key_gets_401(ingest: Ingest) -> None:
    await _internal(ingest)
    for auth in ({}, {"Authorization": "Bearer csk_wrong"}, {"Authorization": "Basic x"}):
        resp = await ingest.client.post("/v1/changes", json=_change(), headers=auth)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_a_polled_provider_has_no_webhook_endpoint(ingest: Ingest) -> None:
    """MYOB sends no webhooks: a delivery to its connection is the same 404 as a provider
    that does not exist, even for a real MYOB connection."""
    conn = await ingest.connect("myob", None, settings={"myob_company_file_id": "cf-1"})
    body = body_for("stripe")
    unknown = await _post(ingest, f"/webhooks/nosuch/{conn.id}", body, {})
    polled = await _post(ingest, f"/webhooks/myob/{conn.id}", body, {})
    assert polled.status == unknown.status == 404
    assert await polled.json() == await unknown.json()
