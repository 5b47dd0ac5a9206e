"""Provider calls reach only public addresses unless the operator allowed more (DESIGN
invariant 12): a connection's base URL on 127.0.0.1, its token URL, a host name that
resolves to loopback, all refused by the session ``connectors.egress.provider_session``
builds, checked where the socket connects. A real aiohttp server and the real database."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from connectors.calls import CallFailedError, attempt
from connectors.egress import GuardedResolver, classify, guarded_socket, provider_session
from connectors.http import AddressRefusedError, StaticAuth, refresh_with, send
from connectors.runtime import OAuthTokens, credentials_json
from crmsync.application.connection_runtime import load_connection, stored_clients
from crmsync.common.crypto import KeyRing, generate_master_key
from tests.integration.connections import lone_connection


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in for something on the host's loopback: every path answers 200 JSON."""
    hits: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path}")
        return web.json_response(
            {"access_token": "new", "expires_in": 1800, "secret": "instance credentials"}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", hits
    finally:
        await runner.cleanup()


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1:{port}/latest/meta-data/", "loopback"),
        ("https://[::ffff:127.0.0.1]:{port}/latest/meta-data/", "loopback"),
        ("https://localhost:{port}/latest/meta-data/", "loopback"),
        ("http://127.0.0.1:{port}/latest/meta-data/", "scheme 'http'"),
    ],
)
async def test_loopback_is_refused_without_the_setting(
    server: tuple[str, list[str]], url: str, why: str
) -> None:
    base, hits = server
    async with provider_session(allow_private=False) as session:
        with pytest.raises(AddressRefusedError) as caught:
            await send(session, "GET", url.format(port=_port(base)), auth=StaticAuth.bearer("t"))
    assert hits == []
    assert not caught.value.transient
    assert why in str(caught.value)
    assert "CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS" in str(caught.value)
    assert caught.value.request == "GET /latest/meta-data/"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://user:secret@127.0.0.1:{port}/customers", "credentials in a provider URL"),
        ("http://2130706433:{port}/customers", "neither a host name nor an IP address"),
    ],
)
async def test_what_no_setting_allows_is_refused_as_the_request_starts(
    server: tuple[str, list[str]], url: str, why: str
) -> None:
    """The session checks each request's URL as it starts (the host's verdict is cached
    per host, issue 18): the same host, asked twice, is refused twice."""
    base, hits = server
    async with provider_session(allow_private=True) as session:
        for _ in range(2):
            with pytest.raises(AddressRefusedError) as caught:
                await send(session, "GET", url.format(port=_port(base)))
            assert why in str(caught.value)
            assert "secret" not in str(caught.value)
    assert hits == []


async def test_loopback_is_reached_with_the_setting(server: tuple[str, list[str]]) -> None:
    base, hits = server
    async with provider_session(allow_private=True) as session:
        body = await send(session, "GET", f"{base}/customers/1", auth=StaticAuth.bearer("t"))
    assert body["access_token"] == "new"
    assert hits == ["GET /customers/1"]


class Rebinding(AbstractResolver):
    """A DNS server that answers a public address to the first question, then loopback:
    the classic way around a check made before connecting."""

    def __init__(self, port: int, answers: Sequence[str] = ("93.184.215.14", "127.0.0.1")) -> None:
        self.port = port
        self.answers = list(answers)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            ResolveResult(
                hostname=host, host=address, port=self.port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


async def test_a_name_is_judged_by_the_address_it_resolves_to_when_connecting(
    server: tuple[str, list[str]],
) -> None:
    """An earlier lookup (the admin API's, say) saw a public address; DNS changed since."""
    base, hits = server
    rebinding = Rebinding(_port(base))
    assert classify((await rebinding.resolve("api.provider.example"))[0]["host"]) is None
    async with provider_session(allow_private=False, resolver=rebinding) as session:
        with pytest.raises(AddressRefusedError) as caught:
            await send(session, "GET", f"https://api.provider.example:{_port(base)}/x")
    assert hits == []
    assert "loopback" in str(caught.value)
    assert "127.0.0.1" not in str(caught.value)  # where a name points inside is ours to know


async def test_the_socket_gate_holds_whatever_the_resolver_answered(
    server: tuple[str, list[str]],
) -> None:
    """guarded_socket alone, under a resolver that checks nothing: the last gate."""
    base, hits = server
    connector = aiohttp.TCPConnector(
        resolver=Rebinding(_port(base), ["127.0.0.1"]), socket_factory=guarded_socket
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(AddressRefusedError):
            await send(session, "GET", f"http://api.provider.example:{_port(base)}/x")
    assert hits == []


async def test_an_oauth_token_url_on_loopback_is_refused(server: tuple[str, list[str]]) -> None:
    base, hits = server
    tokens = OAuthTokens("a", "r", 0.0, "client", "client-secret", f"{base}/oauth/token")
    async with provider_session(allow_private=False) as session:
        with pytest.raises(AddressRefusedError):
            await refresh_with(session, "https://api.provider.example")(tokens)
    assert hits == []


async def _connection(pool: asyncpg.Pool, keyring: KeyRing, base_url: str) -> uuid.UUID:
    created = await lone_connection(
        pool,
        keyring,
        provider="ascora",
        name="ascora",
        webhook_secret="whsec",
        base_url=base_url,
        api_credentials=credentials_json(token="api-token"),
        settings={"company_code": "ACME"},
    )
    return created.id


@pytest.mark.parametrize("allowed", [False, True])
async def test_a_connection_on_loopback_is_refused_unless_allowed(
    pool: asyncpg.Pool, server: tuple[str, list[str]], allowed: bool
) -> None:
    """The way the processor and outbound call providers: Clients, then calls.attempt."""
    base, hits = server
    keyring = KeyRing.parse(generate_master_key("egress"))
    info = await load_connection(pool, await _connection(pool, keyring, base), tenant_id=None)
    assert info is not None
    async with provider_session(allow_private=allowed) as session:
        handle = await stored_clients(pool, keyring, session).get(info)

        async def delete(client: Any) -> None:
            await client.delete("customer", "c-1")

        if allowed:
            await attempt(handle, delete, max_wait_seconds=1.0)
            assert len(hits) == 1
        else:
            with pytest.raises(CallFailedError) as caught:
                await attempt(handle, delete, max_wait_seconds=1.0)
            assert caught.value.reason == "address_refused"
            assert not caught.value.retryable
            assert hits == []


def _addresses(results: Sequence[ResolveResult]) -> list[str]:
    return [r["host"] for r in results]


async def test_the_guarded_resolver_passes_public_answers_through() -> None:
    class Public(Rebinding):
        def __init__(self) -> None:
            super().__init__(443)
            self.answers = ["8.8.8.8"]

    resolver = GuardedResolver(Public())
    assert _addresses(await resolver.resolve("dns.example", 443)) == ["8.8.8.8"]
    await resolver.close()
