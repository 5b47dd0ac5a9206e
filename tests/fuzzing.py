"""Generated requests for ingest and the admin API, and what no answer to them may be.

Shared by the bounded fuzz tests of the suite (tests/integration/test_fuzz.py) and by
``scripts/fuzz`` (tests/fuzz_stack.py), which sends ten thousand or more to a running
stack. Two rules hold for every request: never a 5xx (nor a dropped connection); and never
a 2xx for a webhook that is unsigned or whose signature was garbled, nor for a change or
admin call without a valid key, because a 2xx from ingest means it reached Kafka.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Literal
from urllib.parse import quote

from hypothesis import strategies as st

from connectors.generic import GenericSchemeConfig
from tests.signing import sign

Service = Literal["ingest", "admin"]

# Providers whose signature covers a timestamp that ingest checks (5 minutes each).
TIMESTAMPED = frozenset({"stripe", "standard-webhooks", "ascora", "hubspot"})
# Far outside any tolerance ingest allows (5 minutes; generic schemes at most an hour).
STALE_SECONDS = 3 * 3600
# Any secret but the connection's: a valid whsec_ string, so every scheme can sign with it.
WRONG_SECRET = "whsec_" + base64.b64encode(b"not the secret of this connection").decode()

# Every header some scheme reads, so generated requests reach past "missing header".
SIGNATURE_HEADERS = (
    "stripe-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-xero-signature",
    "intuit-signature",
    "x-hubspot-signature-v3",
    "x-hubspot-request-timestamp",
    "x-shopify-hmac-sha256",
    "x-square-hmacsha256-signature",
    "x-hub-signature-256",
    "x-delivery-id",
    "content-type",
    "authorization",
)


@dataclass(frozen=True)
class WebhookTarget:
    """One connection that receives webhooks, as a provider would call it."""

    provider: str
    path: str  # /webhooks/{provider}/{connection id}
    url: str  # the public URL ingest sees (HubSpot signs it)
    secret: str
    generic: GenericSchemeConfig | None = None


@dataclass(frozen=True)
class AdminRoute:
    method: str
    path: str  # with {placeholders}
    body: bool
    query_fields: tuple[str, ...]


@dataclass(frozen=True)
class Targets:
    webhooks: tuple[WebhookTarget, ...]
    publish_key: str
    admin_key: str = ""
    admin_routes: tuple[AdminRoute, ...] = ()


@dataclass(frozen=True)
class Probe:
    """One generated request; ``forbid_2xx`` when success would let something unverified in."""

    kind: str
    service: Service
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    forbid_2xx: bool

    def describe(self) -> str:
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"{self.kind}: {self.method} {self.path} headers={self.headers!r} body={body!r}"


@dataclass
class Answer:
    status: int  # 0: no answer (the connection dropped)
    content_type: str = ""
    body: bytes = b""


def violations(probe: Probe, answer: Answer) -> list[str]:
    """What is wrong with ``answer``; empty when nothing is."""
    found = []
    if answer.status == 0:
        found.append("no answer")
    elif answer.status >= 500:
        found.append(f"{answer.status}")
    elif probe.forbid_2xx and 200 <= answer.status < 300:
        found.append(f"{answer.status} without a valid signature or key")
    return found


@dataclass
class Client:
    """A kept-alive HTTP/1.1 connection to one service; reconnects when the server closes."""

    host: str
    port: int
    timeout: float = 30.0
    _conn: http.client.HTTPConnection | None = field(default=None, init=False)

    def send(self, probe: Probe) -> Answer:
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(probe.method, probe.path, body=probe.body, headers=probe.headers)
                response = self._conn.getresponse()
                body = response.read()
            except (ConnectionError, http.client.HTTPException, TimeoutError):
                # A kept-alive connection the server closed between two requests: retry on a
                # new one. A second failure is an answer that never came.
                self.close()
                if attempt:
                    return Answer(0)
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return Answer(response.status, response.getheader("Content-Type", ""), body)
        return Answer(0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- bodies -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


json_bodies = st.builds(_dumps, json_values, st.booleans())


def _nested(depth: int, opener: str) -> bytes:
    if opener == "[":
        return b"[" * depth + b"]" * depth
    return b'{"a": ' * depth + b"1" + b"}" * depth


# Around the parser's limit (200), far past it, and past Python's recursion limit.
deep_bodies = st.builds(
    _nested,
    st.sampled_from([199, 200, 201, 202, 999, 1001, 5000, 100_000]) | st.integers(1, 3000),
    st.sampled_from(["[", "{"]),
)
# What parsers disagree on: not-quite-JSON numbers, escapes UTF-8 cannot carry, BOMs and
# other encodings, NUL, trailing garbage, numbers too long for int().
TRICKY_BODIES = (
    b"",
    b" ",
    b"null",
    b"[]",
    b"{}",
    b"NaN",
    b"[Infinity]",
    b"-0",
    b"1e400",
    b"9" * 5000,
    b'"\\ud800"',
    b'{"\\udfff": 1}',
    b'"\\u0000"',
    b"\x00",
    b"\xef\xbb\xbf{}",
    '{"a": "é"}'.encode("utf-16"),
    '{"a": "é"}'.encode("utf-32"),
    b"\xff\xfe\xfd",
    b'{"a": 1} trailing',
    b'{"a": 1, "a": 2}',
)
any_bodies = st.one_of(
    st.binary(max_size=512),
    json_bodies,
    deep_bodies,
    st.sampled_from(TRICKY_BODIES),
)


def _iso(value: Any) -> str:
    return str(value.isoformat())


# A change event close enough to valid that validation, not parsing, decides.
change_like = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=1, max_size=24),
        "entity_type": st.sampled_from(["customer", "job", "invoice", "payment"]),
        "op": st.sampled_from(["upsert", "delete"]),
        "external_id": st.text(min_size=1, max_size=24),
        "occurred_at": st.datetimes(timezones=st.just(UTC)).map(_iso),
    },
    optional={
        "data": st.dictionaries(st.text(max_size=12), json_values, max_size=5),
        "refs": st.dictionaries(
            st.sampled_from(["customer_id", "job_id", "invoice_id"]), st.text(max_size=12)
        ),
    },
)


@st.composite
def _broken_change(draw: st.DrawFn) -> dict[str, Any]:
    change = dict(draw(change_like))
    key = draw(st.sampled_from([*change, "surprise"]))
    if draw(st.booleans()):
        change.pop(key, None)
    else:
        change[key] = draw(json_values)
    return change


change_bodies = st.one_of(
    st.builds(_dumps, change_like | _broken_change(), st.booleans()),
    st.builds(
        _dumps, st.lists(change_like | _broken_change(), min_size=0, max_size=6), st.booleans()
    ),
    any_bodies,
)

# Header values HTTP can carry: visible latin-1 and spaces, no control characters.
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=120,
)
signature_like = st.one_of(
    header_values,
    st.from_regex(r"t=[0-9]{1,12},v1=[0-9a-f]{0,64}", fullmatch=True),
    st.from_regex(r"v1,[A-Za-z0-9+/=]{0,48}( v1,[A-Za-z0-9+/=]{0,48})?", fullmatch=True),
    st.from_regex(r"sha256=[0-9a-f]{0,64}", fullmatch=True),
    st.from_regex(r"[0-9]{1,14}", fullmatch=True),
    st.from_regex(r"Bearer [A-Za-z0-9_]{0,48}", fullmatch=True),
)
random_headers = st.dictionaries(st.sampled_from(SIGNATURE_HEADERS), signature_like, max_size=8)


# -- ingest: webhooks -----------------------------------------------------------------------


@st.composite
def unsigned_webhooks(draw: st.DrawFn, targets: Targets) -> Probe:
    """Headers and body at random, to a real connection or an unknown one: never 2xx."""
    known = [t.path for t in targets.webhooks]
    providers = sorted({t.provider for t in targets.webhooks})
    unknown = st.builds(
        lambda p, c: f"/webhooks/{p}/{c}",
        st.sampled_from([*providers, "nope"]),
        st.uuids().map(str) | st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True),
    )
    # Mostly known connections: an unknown id makes ingest reload its cache first (at most
    # five times a second), so each one costs up to 200 ms.
    path = draw(unknown if draw(st.integers(0, 19)) == 0 else st.sampled_from(known))
    return Probe(
        "webhook-unsigned", "ingest", "POST", path, draw(random_headers), draw(any_bodies), True
    )


@st.composite
def garbled_webhooks(draw: st.DrawFn, targets: Targets) -> Probe:
    """A correctly signed webhook with one thing then changed: never 2xx."""
    target = draw(st.sampled_from(targets.webhooks))
    body = draw(any_bodies)
    now = time.time()
    event_id = f"msg_{draw(st.integers(0, 10**9))}"
    ways = ["body", "wrong-secret", "no-signature", "signature-of-another-body"]
    if target.provider in TIMESTAMPED or (target.generic and target.generic.timestamp_header):
        ways += ["stale", "future"]
    how = draw(st.sampled_from(ways))
    signed_body = body
    when = now
    secret = target.secret
    if how == "body":
        at = draw(st.integers(0, len(body)))
        if body and at < len(body) and draw(st.booleans()):
            flipped = body[at] ^ draw(st.integers(1, 255))
            body = body[:at] + bytes([flipped]) + body[at + 1 :]
        else:
            body = body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]
    elif how == "signature-of-another-body":
        signed_body = body + b" "
    elif how == "wrong-secret":
        secret = WRONG_SECRET
    elif how == "stale":
        when = now - STALE_SECONDS
    elif how == "future":
        when = now + STALE_SECONDS
    headers = sign(
        target.provider,
        secret,
        signed_body,
        now=when,
        url=target.url,
        event_id=event_id,
        generic_config=target.generic,
    )
    if how == "no-signature":
        signature_header = _signature_header(target)
        headers = {k: v for k, v in headers.items() if k != signature_header}
    return Probe(f"webhook-garbled-{how}", "ingest", "POST", target.path, headers, body, True)


def _signature_header(target: WebhookTarget) -> str:
    if target.generic is not None:
        return target.generic.signature_header
    return {
        "stripe": "stripe-signature",
        "standard-webhooks": "webhook-signature",
        "ascora": "webhook-signature",
        "xero": "x-xero-signature",
        "quickbooks": "intuit-signature",
        "hubspot": "x-hubspot-signature-v3",
        "shopify": "x-shopify-hmac-sha256",
        "square": "x-square-hmacsha256-signature",
    }[target.provider]


@st.composite
def signed_webhooks(draw: st.DrawFn, targets: Targets) -> Probe:
    """A correctly signed webhook with any body at all: 2xx is fine, 5xx never."""
    target = draw(st.sampled_from(targets.webhooks))
    body = draw(any_bodies)
    headers = sign(
        target.provider,
        target.secret,
        body,
        now=time.time(),
        url=target.url,
        event_id=draw(st.text(min_size=1, max_size=300).map(_header_safe)),
        generic_config=target.generic,
    )
    return Probe("webhook-signed", "ingest", "POST", target.path, headers, body, False)


def _header_safe(text: str) -> str:
    """``text`` as a header value can carry it: latin-1, no control characters."""
    kept = "".join(c for c in text if 0x20 <= ord(c) <= 0xFF and c != "\x7f").strip()
    return kept or "id"


# -- ingest: internal changes ---------------------------------------------------------------


@st.composite
def changes(draw: st.DrawFn, targets: Targets) -> Probe:
    """``POST /v1/changes`` with any body; without the publish key it must not succeed."""
    keyed = draw(st.integers(0, 9)) > 0  # mostly keyed: the body is what is under test
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", ""]))}
    if keyed:
        headers["Authorization"] = f"Bearer {targets.publish_key}"
    else:
        wrong = draw(
            st.sampled_from(["", "Bearer ", "Basic x", f"Bearer {targets.publish_key}x"])
            | signature_like
        )
        if wrong:
            headers["Authorization"] = wrong
    return Probe(
        "changes", "ingest", "POST", "/v1/changes", headers, draw(change_bodies), not keyed
    )


# -- admin ----------------------------------------------------------------------------------


def _concrete(path: str, draw: st.DrawFn) -> str:
    ids = st.uuids().map(str) | st.from_regex(r"[A-Za-z0-9%._~-]{1,40}", fullmatch=True)
    return "/".join(draw(ids) if p.startswith("{") else p for p in path.split("/"))


def _auth(draw: st.DrawFn, targets: Targets) -> tuple[dict[str, str], bool]:
    if draw(st.integers(0, 9)) > 0:
        return {"Authorization": f"Bearer {targets.admin_key}"}, True
    wrong = draw(st.sampled_from(["", "Bearer csk_wrong", f"Bearer {targets.admin_key}x"]))
    return ({"Authorization": wrong} if wrong else {}), False


@st.composite
def admin_bodies(draw: st.DrawFn, targets: Targets) -> Probe:
    """Any body to every admin route that reads one; without the key it must not succeed."""
    route = draw(st.sampled_from([r for r in targets.admin_routes if r.body]))
    headers, keyed = _auth(draw, targets)
    headers["Content-Type"] = "application/json"
    body = draw(
        any_bodies
        | st.builds(
            _dumps, st.dictionaries(st.text(max_size=20), json_values, max_size=6), st.booleans()
        )
    )
    path = _concrete(route.path, draw)
    return Probe("admin-body", "admin", route.method, path, headers, body, not keyed)


@st.composite
def admin_queries(draw: st.DrawFn, targets: Targets) -> Probe:
    """Any query string to every admin route that takes one."""
    route = draw(st.sampled_from([r for r in targets.admin_routes if r.method == "GET"]))
    headers, keyed = _auth(draw, targets)
    names = st.sampled_from([*route.query_fields, "x"]) if route.query_fields else st.just("x")
    values = header_values | st.sampled_from(
        ["", "0", "-1", "501", "true", "2026-13-45", "1e999", str(uuid.uuid4()), "%00", "%ff"]
    )
    pairs = draw(st.lists(st.tuples(names, values), max_size=4))
    query = "&".join(f"{k}={_quote(v)}" for k, v in pairs)
    path = _concrete(route.path, draw) + (f"?{query}" if query else "")
    return Probe("admin-query", "admin", "GET", path, headers, b"", not keyed)


def _quote(value: str) -> str:
    # %-sequences given as such stay, so a query can carry "%00" and broken escapes.
    return quote(value, safe="%" if value.startswith("%") else "")


def kinds(targets: Targets) -> dict[str, st.SearchStrategy[Probe]]:
    """Every generator, by name, for what ``targets`` offers."""
    out: dict[str, st.SearchStrategy[Probe]] = {
        "changes": changes(targets),
        "webhook-unsigned": unsigned_webhooks(targets),
        "webhook-garbled": garbled_webhooks(targets),
        "webhook-signed": signed_webhooks(targets),
    }
    if targets.admin_routes:
        out["admin-body"] = admin_bodies(targets)
        out["admin-query"] = admin_queries(targets)
    return out


def admin_routes_of(routes: Sequence[Any]) -> tuple[AdminRoute, ...]:
    """The admin route table (services.admin.routes.routes()) as generators need it."""
    return tuple(
        AdminRoute(
            r.method,
            r.path,
            r.body is not None,
            tuple(r.query.model_fields) if r.query is not None else (),
        )
        for r in routes
    )
