"""What ``connectors.http.send`` does with answers a provider should not give: a redirect
(never followed with our credentials) and a body too large to hold (DESIGN invariant 12).
Real aiohttp servers on 127.0.0.1; the session is a plain one, since both rules belong to
``send`` whatever session it is given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from connectors.http import (
    MAX_RESPONSE_BYTES,
    ProviderError,
    RedirectRefusedError,
    ResponseTooLargeError,
    StaticAuth,
    send,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """Every request a test server received: path and headers."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def record(self, request: web.Request) -> None:
        self.requests.append((request.path, dict(request.headers)))


@dataclass
class Servers:
    session: aiohttp.ClientSession
    runners: list[web.AppRunner] = field(default_factory=list)

    async def serve(self, routes: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    async with aiohttp.ClientSession() as session:
        servers = Servers(session)
        try:
            yield servers
        finally:
            for runner in servers.runners:
                await runner.cleanup()


def _recorder(seen: Seen, body: str = '{"ok": true}') -> Handler:
    async def handle(request: web.Request) -> web.Response:
        seen.record(request)
        return web.Response(text=body, content_type="application/json")

    return handle


async def test_a_same_origin_redirect_is_not_followed_with_the_token(servers: Servers) -> None:
    seen = Seen()

    async def moved(request: web.Request) -> web.Response:
        seen.record(request)
        raise web.HTTPFound("/elsewhere")

    base = await servers.serve({"/customers/1": moved, "/elsewhere": _recorder(seen)})
    with pytest.raises(ProviderError) as caught:
        await send(
            servers.session, "GET", f"{base}/customers/1", auth=StaticAuth.bearer("s3cret-token")
        )
    assert [path for path, _ in seen.requests] == ["/customers/1"]
    assert isinstance(caught.value, RedirectRefusedError)
    assert caught.value.status == 302
    assert not caught.value.transient
    assert "redirect" in str(caught.value)
    assert "/elsewhere" in str(caught.value)  # where it pointed, to diagnose a moved API


async def _moved_off_origin(
    servers: Servers, path: str, redirect: type[web.HTTPMove], to: str
) -> tuple[str, Seen]:
    """A server whose ``path`` answers ``redirect`` to ``to`` on another server: its base
    URL, and what the other server was asked."""
    target_seen = Seen()
    target = await servers.serve({"/{tail:.*}": _recorder(target_seen)})

    async def moved(request: web.Request) -> web.Response:
        raise redirect(f"{target}{to}")

    return await servers.serve({path: moved}), target_seen


async def test_a_cross_origin_redirect_target_never_sees_the_api_key(servers: Servers) -> None:
    """aiohttp itself drops Authorization across origins, not a custom API-key header."""
    base, target_seen = await _moved_off_origin(
        servers, "/customers", web.HTTPTemporaryRedirect, "/latest/meta-data/"
    )
    auth = StaticAuth("key-123", header_name="X-Api-Key")
    with pytest.raises(RedirectRefusedError):
        await send(servers.session, "POST", f"{base}/customers", auth=auth, json_body={"a": 1})
    assert target_seen.requests == []


async def test_a_token_refresh_is_not_redirected_either(servers: Servers) -> None:
    base, target_seen = await _moved_off_origin(servers, "/oauth/token", web.HTTPFound, "/token")
    with pytest.raises(RedirectRefusedError):
        await send(servers.session, "POST", f"{base}/oauth/token", data={"client_secret": "x"})
    assert target_seen.requests == []


async def test_a_body_over_the_cap_is_a_clean_non_retryable_error(servers: Servers) -> None:
    chunk = b"[" + b"0," * (MAX_RESPONSE_BYTES // 2) + b"0]"  # valid JSON, just too much
    assert len(chunk) > MAX_RESPONSE_BYTES

    async def chunked(request: web.Request) -> web.StreamResponse:
        # No Content-Length: the cap must hold while reading, not only on the header.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(chunk), 1 << 20):
            await response.write(chunk[start : start + (1 << 20)])
        await response.write_eof()
        return response

    base = await servers.serve({"/customers": chunked})
    with pytest.raises(ResponseTooLargeError) as caught:
        await send(servers.session, "GET", f"{base}/customers")
    assert not caught.value.transient
    assert caught.value.status == 200
    assert caught.value.body_excerpt == ""  # nothing of a refused body is kept


async def test_a_declared_length_over_the_cap_is_refused_before_reading(servers: Servers) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"}, status=500)
        response.content_length = MAX_RESPONSE_BYTES + 1
        await response.prepare(request)
        await response.write(b"{")
        return response  # the client must not wait for the rest

    base = await servers.serve({"/customers": huge})
    with pytest.raises(ResponseTooLargeError) as caught:
        await send(servers.session, "GET", f"{base}/customers", timeout_seconds=5)
    assert caught.value.status == 500
    assert not caught.value.transient


async def test_a_body_at_the_cap_is_read(servers: Servers) -> None:
    body = '["' + "x" * (MAX_RESPONSE_BYTES - 4) + '"]'
    assert len(body) == MAX_RESPONSE_BYTES
    base = await servers.serve({"/customers": _recorder(Seen(), body)})
    got = await send(servers.session, "GET", f"{base}/customers")
    assert len(got[0]) == MAX_RESPONSE_BYTES - 4
