"""Property: nothing but a genuine signature verifies, and failure is only SignatureError."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import SignatureError, WebhookRequest
from tests.unit.connectors.cases import CASES, NOW, Case

# Every header any scheme reads, so random dicts hit the code past "missing_header".
KNOWN_HEADERS = sorted(
    {name for case in CASES for name in case.required_headers}
    | {"x-shopify-webhook-id", "x-github-delivery", "content-type"}
)

# Servers may hand over undecodable header bytes as surrogateescape text: include it.
any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=120)
timestamps = st.integers(min_value=int(NOW) - 400, max_value=int(NOW) + 400)
digests = st.binary(min_size=1, max_size=64)
hex_digest = digests.map(bytes.hex)
b64_digest = digests.map(lambda raw: base64.b64encode(raw).decode())
header_values = st.one_of(
    any_text,
    timestamps.map(str),
    timestamps.map(lambda t: str(t * 1000)),
    hex_digest,
    b64_digest,
    hex_digest.map(lambda sig: f"sha256={sig}"),
    st.builds(lambda t, sig: f"t={t},v1={sig}", timestamps, hex_digest),
    st.lists(b64_digest.map(lambda sig: f"v1,{sig}"), max_size=3).map(" ".join),
)
# The shape each scheme expects for its own headers, so draws get past header parsing.
seconds = timestamps.map(str)
SHAPED = {
    "stripe-signature": st.builds(lambda t, sig: f"t={t},v1={sig}", timestamps, hex_digest),
    "webhook-id": any_text,
    "webhook-timestamp": seconds,
    "webhook-signature": st.lists(
        b64_digest.map(lambda sig: f"v1,{sig}"), min_size=1, max_size=3
    ).map(" ".join),
    "x-hubspot-request-timestamp": timestamps.map(lambda t: str(t * 1000)),
    "x-hub-signature-256": hex_digest.map(lambda sig: f"sha256={sig}"),
    "x-timestamp": seconds,
}
header_dicts = st.dictionaries(
    st.one_of(st.sampled_from(KNOWN_HEADERS), any_text), header_values, max_size=8
)
bodies = st.one_of(st.binary(max_size=256), st.sampled_from([c.body for c in CASES]))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@given(data=st.data(), body=bodies, url=any_text, method=any_text)
def test_random_requests_never_verify_and_only_raise_signature_error(
    case: Case, data: st.DataObject, body: bytes, url: str, method: str
) -> None:
    # Mostly the scheme's own headers with plausible values, so the draws reach the
    # signature comparison rather than stopping at "missing_header".
    own = data.draw(
        st.fixed_dictionaries(
            {name: SHAPED.get(name, b64_digest) | header_values for name in case.required_headers}
        )
    )
    dropped = data.draw(st.sets(st.sampled_from(case.required_headers)))
    headers = data.draw(header_dicts) | {k: v for k, v in own.items() if k not in dropped}
    request = WebhookRequest(method, url, headers, body)
    # pytest.raises lets any other exception type through, failing the test.
    with pytest.raises(SignatureError):
        case.connector.scheme.verify(request, [case.new_secret], NOW)
