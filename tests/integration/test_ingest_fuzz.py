"""Property: whatever headers and body arrive, ingest never answers 5xx, and never 2xx
without a valid signature (so nothing unverified reaches Kafka)."""

from __future__ import annotations

import asyncio
import http.client

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest_harness import Ingest
from tests.integration.test_ingest import GENERIC, SECRETS

# Every header some scheme reads, so the fuzzer reaches past "missing header".
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
    "x-hub-signature-256",
    "content-type",
)
# Header values HTTP can carry: visible latin-1 and spaces, no control characters.
header_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=120,
)
signature_like = st.one_of(
    header_value,
    st.from_regex(r"t=[0-9]{1,12},v1=[0-9a-f]{0,64}", fullmatch=True),
    st.from_regex(r"v1,[A-Za-z0-9+/=]{0,48}( v1,[A-Za-z0-9+/=]{0,48})?", fullmatch=True),
    st.from_regex(r"sha256=[0-9a-f]{0,64}", fullmatch=True),
    st.from_regex(r"[0-9]{1,14}", fullmatch=True),
)
headers = st.dictionaries(st.sampled_from(SIGNATURE_HEADERS), signature_like, max_size=8)
bodies = st.binary(max_size=2048)


async def test_random_requests_never_5xx_never_2xx(ingest: Ingest) -> None:
    paths = []
    for provider, secret in SECRETS.items():
        extra = {"generic": GENERIC.model_dump(mode="json")} if provider == "generic" else None
        conn = await ingest.connect(provider, secret, settings=extra)
        paths.append(f"/webhooks/{provider}/{conn.id}")
    server = ingest.client.server
    host, port = str(server.host), int(server.port or 0)

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(path=st.sampled_from(paths), headers=headers, body=bodies)
    def check(path: str, headers: dict[str, str], body: bytes) -> None:
        http_conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            http_conn.request("POST", path, body=body, headers=headers)
            status = http_conn.getresponse().status
        finally:
            http_conn.close()
        assert status < 500, (path, headers)
        assert not 200 <= status < 300, (path, headers)

    # The server runs on this event loop; the blocking client runs in a thread beside it.
    await asyncio.to_thread(check)
