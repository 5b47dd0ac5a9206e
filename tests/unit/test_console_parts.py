"""The console's pure parts: the sealed session, money and payload rendering, typed values,
and the error page for what nothing else caught. Pages against the database are in
tests/integration/test_console.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crmsync.common.crypto import KeyRing, generate_master_key
from services.admin.console.render import hexdump, money
from services.admin.console.session import COOKIE, LIFETIME, Session
from services.admin.console.views import add_console, page, typed_value
from services.admin.routes import routes

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.parse(generate_master_key("k1"))


def test_a_session_opens_only_under_its_key_ring_and_within_its_lifetime(
    keyring: KeyRing,
) -> None:
    session = Session.new("csk_secret", "admin", NOW)
    sealed = session.seal(keyring)
    assert "csk_secret" not in sealed
    opened = Session.open(keyring, sealed, NOW + LIFETIME - timedelta(seconds=1))
    assert opened == session
    assert Session.open(keyring, sealed, NOW + LIFETIME + timedelta(seconds=1)) is None
    other = KeyRing.parse(generate_master_key("k1"))
    assert Session.open(other, sealed, NOW) is None
    assert Session.open(keyring, sealed[:-2] + "xx", NOW) is None
    assert Session.open(keyring, None, NOW) is None
    # Another ciphertext of the same key ring (a webhook secret, say) is not a session.
    assert Session.open(keyring, keyring.encrypt('{"k": "x"}', "secret"), NOW) is None


def test_csrf_is_compared_to_the_sessions_own_token(keyring: KeyRing) -> None:
    session = Session.new("k", "read", NOW)
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(None)
    assert not session.csrf_ok("")
    assert not session.csrf_ok(Session.new("k", "read", NOW).csrf)


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (123456, "USD", "1,234.56 USD"),
        (5, "EUR", "0.05 EUR"),
        (1500, "JPY", "1,500 JPY"),
        (1234, "KWD", "1.234 KWD"),
        # 2**53 + 1 would lose its last digit through a float.
        (9007199254740993, "USD", "90,071,992,547,409.93 USD"),
        (7, "XAU", "7 XAU"),  # no minor unit: shown as stored
        (100, None, "100"),
        ("12", "USD", "12"),
    ],
)
def test_money_shows_exact_major_units_with_the_currency(
    minor: object, currency: object, shown: str
) -> None:
    assert money(minor, currency) == shown


def test_hexdump_shows_offsets_bytes_and_text() -> None:
    assert hexdump(b"ab\x00\xff") == "00000000  61 62 00 ff" + " " * 38 + "ab.."
    lines = hexdump(bytes(range(20))).splitlines()
    assert [line[:8] for line in lines] == ["00000000", "00000010"]


@pytest.mark.parametrize(
    ("typed", "value"),
    [("42", 42), ("true", True), ('"42"', "42"), ("Ada Lovelace", "Ada Lovelace"), ("", "")],
)
def test_a_typed_value_is_json_when_it_parses_else_text(typed: str, value: object) -> None:
    assert typed_value(typed) == value


async def test_an_unexpected_error_is_a_readable_page(
    keyring: KeyRing, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application()
    add_console(app, routes(), keyring)

    @page
    async def broken(_request: web.Request) -> web.StreamResponse:
        raise RuntimeError("a bug")

    app.router.add_get("/console/broken", broken)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        sealed = Session.new("k", "admin", datetime.now(UTC)).seal(keyring)
        client.session.cookie_jar.update_cookies({COOKIE: sealed})
        resp = await client.get("/console/broken")
        assert resp.status == 500
        assert resp.content_type == "text/html"
        assert "Something went wrong; it was logged." in await resp.text()
        assert "unhandled error in GET /console/broken" in caplog.text
    finally:
        await client.close()
