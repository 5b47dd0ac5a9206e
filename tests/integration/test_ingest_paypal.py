"""PayPal deliveries at ingest: verified with the certificate their header names, fetched
by ingest through the egress rules (a local CA and leaf, no network); a certificate that
cannot be fetched now answers 503 so PayPal delivers again; one off PayPal's hosts is
refused without a fetch."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.paypal.simulator import issue_chain
from crmsync.common.connections import CreatedConnection
from crmsync.localstack.ports import free_port
from schemas.envelope import WebhookEnvelope
from tests.ingest_harness import Ingest, Tap

WEBHOOK_ID = "8PT597110X687430LKGECATA"
BODY = json.dumps(
    {
        "id": "WH-2WR32451HC0233532-67976317FL4543714",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "create_time": "2026-12-06T00:00:00Z",
        "resource": {"id": "42311647XV020574X"},
    }
).encode()


@dataclass
class CertServer:
    url: str
    anchor: str
    key: rsa.RSAPrivateKey
    fetches: list[str]


@pytest.fixture
async def cert_server() -> AsyncIterator[CertServer]:
    ca, leaf, key = issue_chain()
    fetches: list[str] = []

    async def serve_cert(request: web.Request) -> web.Response:
        fetches.append(request.path)
        return web.Response(body=leaf, content_type="application/x-pem-file")

    app = web.Application()
    app.router.add_get("/v1/notifications/certs/CERT-1", serve_cert)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield CertServer(
            f"http://{host}:{port}/v1/notifications/certs/CERT-1", ca.decode(), key, fetches
        )
    finally:
        await runner.cleanup()


def signed(key: rsa.RSAPrivateKey, cert_url: str, n: int) -> dict[str, str]:
    transmission_id, when = f"tx-{n}", "2026-12-06T00:00:00Z"
    message = f"{transmission_id}|{when}|{WEBHOOK_ID}|{zlib.crc32(BODY) & 0xFFFFFFFF}"
    signature = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return {
        "content-type": "application/json",
        "paypal-transmission-id": transmission_id,
        "paypal-transmission-time": when,
        "paypal-transmission-sig": base64.b64encode(signature).decode(),
        "paypal-cert-url": cert_url,
        "paypal-auth-algo": "SHA256withRSA",
    }


async def trusting(
    ingest: Ingest, cert_server: CertServer, webhook_id: str = WEBHOOK_ID
) -> CreatedConnection:
    """A PayPal connection of ``webhook_id`` that trusts the certificate server's anchor."""
    return await ingest.connect(
        "paypal", webhook_id, settings={"paypal_trust_anchors": cert_server.anchor}
    )


async def test_a_delivery_verified_with_its_certificate_lands_in_kafka(
    ingest: Ingest, raw_tap: Tap, cert_server: CertServer
) -> None:
    conn = await trusting(ingest, cert_server)
    path = f"/webhooks/paypal/{conn.id}"
    for n in range(3):
        headers = signed(cert_server.key, cert_server.url, n)
        resp = await ingest.client.post(path, data=BODY, headers=headers)
        assert resp.status == 200, await resp.text()
    assert len(cert_server.fetches) == 1, "the certificate is cached per URL"
    records = await raw_tap.read(str(conn.id).encode(), 3)
    envelope = WebhookEnvelope.model_validate_json(records[0].value)
    assert envelope.body == BODY
    assert envelope.provider_event_id == "WH-2WR32451HC0233532-67976317FL4543714"


async def test_a_certificate_that_cannot_be_fetched_now_is_a_503(
    ingest: Ingest, raw_tap: Tap, cert_server: CertServer
) -> None:
    conn = await trusting(ingest, cert_server)
    nowhere = f"http://127.0.0.1:{free_port()}/v1/notifications/certs/CERT-1"
    resp = await ingest.client.post(
        f"/webhooks/paypal/{conn.id}", data=BODY, headers=signed(cert_server.key, nowhere, 1)
    )
    assert resp.status == 503
    assert resp.headers["Retry-After"]
    assert await raw_tap.nothing_for(str(conn.id).encode())


async def test_a_certificate_off_paypals_hosts_is_refused_unfetched(
    ingest: Ingest, raw_tap: Tap, cert_server: CertServer
) -> None:
    conn = await trusting(ingest, cert_server)
    headers = signed(cert_server.key, "https://attacker.example/cert.pem", 1)
    resp = await ingest.client.post(f"/webhooks/paypal/{conn.id}", data=BODY, headers=headers)
    assert resp.status == 401
    assert cert_server.fetches == []
    assert await raw_tap.nothing_for(str(conn.id).encode())


async def test_a_delivery_for_another_webhook_id_is_a_401(
    ingest: Ingest, raw_tap: Tap, cert_server: CertServer
) -> None:
    conn = await trusting(ingest, cert_server, "ANOTHER-WEBHOOK-ID")
    headers = signed(cert_server.key, cert_server.url, 1)
    resp = await ingest.client.post(f"/webhooks/paypal/{conn.id}", data=BODY, headers=headers)
    assert resp.status == 401
    assert await raw_tap.nothing_for(str(conn.id).encode())
