"""The configurable scheme: GitHub's example, configuration rules, event id sources."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from connectors.base import SignatureError, WebhookRequest
from connectors.generic import GenericSchemeConfig, connector_for
from connectors.generic.signature import CONFIGURING, MAX_TOLERANCE_SECONDS
from tests.signing import sign

NOW = 1_700_000_000.0
GITHUB = GenericSchemeConfig(signature_header="X-Hub-Signature-256", prefix="sha256=")


def verify(config: GenericSchemeConfig, headers: dict[str, str], body: bytes, secret: str) -> str:
    request = WebhookRequest("POST", "https://h", headers, body)
    return connector_for(config).scheme.verify(request, [secret], NOW).provider_event_id


# GitHub's documented example (also in PROVIDERS.md).
GITHUB_EXAMPLE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_verifies_githubs_documented_example() -> None:
    headers = {"x-hub-signature-256": GITHUB_EXAMPLE}
    event_id = verify(GITHUB, headers, b"Hello, World!", "It's a Secret to Everybody")
    assert event_id == "sha256:" + hashlib.sha256(b"Hello, World!").hexdigest()


def test_accepts_upper_case_hex_signature() -> None:
    headers = {"x-hub-signature-256": "sha256=" + GITHUB_EXAMPLE.removeprefix("sha256=").upper()}
    verify(GITHUB, headers, b"Hello, World!", "It's a Secret to Everybody")


def test_stores_header_names_lower_case() -> None:
    config = GenericSchemeConfig(
        signature_header="X-Sig", timestamp_header="X-Ts", event_id_header="X-Delivery"
    )
    assert (config.signature_header, config.timestamp_header, config.event_id_header) == (
        "x-sig",
        "x-ts",
        "x-delivery",
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"signature_header": "x-sig", "unknown": 1},
        {"signature_header": "x-sig", "signed_payload": "timestamp.body"},
        {"signature_header": "x-sig", "tolerance_seconds": 0},
        {"signature_header": "x-sig", "algorithm": "md5"},
        {"signature_header": ""},
    ],
    ids=["extra-field", "timestamp-body-without-header", "zero-tolerance", "md5", "empty-header"],
)
def test_rejects_invalid_configuration(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        GenericSchemeConfig.model_validate(fields)


def test_configuration_is_frozen() -> None:
    with pytest.raises(ValidationError):
        GITHUB.prefix = ""  # type: ignore[misc]


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_verifies_every_algorithm_and_encoding(algorithm: str, encoding: str) -> None:
    config = GenericSchemeConfig.model_validate(
        {"signature_header": "x-sig", "algorithm": algorithm, "encoding": encoding}
    )
    headers = sign("generic", "s3cret", b"{}", now=NOW, generic_config=config)
    assert verify(config, headers, b"{}", "s3cret").startswith("sha256:")


def test_rejects_signature_of_another_algorithm() -> None:
    sha1 = GenericSchemeConfig(signature_header="x-sig", algorithm="sha1")
    headers = sign("generic", "s3cret", b"{}", now=NOW, generic_config=sha1)
    with pytest.raises(SignatureError) as caught:
        verify(GenericSchemeConfig(signature_header="x-sig"), headers, b"{}", "s3cret")
    assert caught.value.reason == "bad_signature"


def test_timestamp_body_signature_does_not_verify_as_body_only() -> None:
    signed_with_ts = GenericSchemeConfig(
        signature_header="x-sig", timestamp_header="x-ts", signed_payload="timestamp.body"
    )
    body_only = GenericSchemeConfig(signature_header="x-sig", timestamp_header="x-ts")
    headers = sign("generic", "s3cret", b"{}", now=NOW, generic_config=signed_with_ts)
    with pytest.raises(SignatureError) as caught:
        verify(body_only, headers, b"{}", "s3cret")
    assert caught.value.reason == "bad_signature"


def test_checks_the_timestamp_header_even_when_it_is_not_signed() -> None:
    config = GenericSchemeConfig(signature_header="x-sig", timestamp_header="x-ts")
    headers = sign("generic", "s3cret", b"{}", now=NOW - 301, generic_config=config)
    with pytest.raises(SignatureError) as caught:
        verify(config, headers, b"{}", "s3cret")
    assert caught.value.reason == "stale_timestamp"


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("data.id", b'{"data":{"id":"obj_1"}}', "obj_1"),
        ("data.id", b'{"data":{"id":42}}', "42"),
        ("items.1.id", b'{"items":[{"id":"a"},{"id":"b"}]}', "b"),
        ("data.id", b'{"data":{"id":{"nested":1}}}', None),
        ("data.id", b'{"data":[]}', None),
        ("items.5.id", b'{"items":[]}', None),
        ("data.id", b"not json", None),
    ],
)
def test_event_id_from_body_path_or_body_hash(path: str, body: bytes, expected: str | None) -> None:
    config = GenericSchemeConfig(signature_header="x-sig", event_id_path=path)
    headers = sign("generic", "s3cret", body, now=NOW, generic_config=config)
    fallback = "sha256:" + hashlib.sha256(body).hexdigest()
    assert verify(config, headers, body, "s3cret") == (expected or fallback)


def test_event_id_header_wins_over_body_path() -> None:
    config = GenericSchemeConfig(
        signature_header="x-sig", event_id_header="x-delivery", event_id_path="id"
    )
    body = b'{"id":"from-body"}'
    headers = sign(
        "generic", "s3cret", body, now=NOW, event_id="from-header", generic_config=config
    )
    assert verify(config, headers, body, "s3cret") == "from-header"
    del headers["x-delivery"]
    assert verify(config, headers, body, "s3cret") == "from-body"


def test_connector_keeps_timestamp_and_event_id_headers_but_not_the_signature() -> None:
    config = GenericSchemeConfig(
        signature_header="x-sig", timestamp_header="x-ts", event_id_header="x-delivery"
    )
    assert connector_for(config).kept_headers == ("content-type", "x-ts", "x-delivery")
    assert connector_for(config).slug == "generic"


def test_we_issue_the_secret() -> None:
    assert connector_for(GITHUB).scheme.issues_own_secret is False


# -- what an operator may configure ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        (
            {"signature_header": "x-sig", "timestamp_header": "x-ts"},
            "timestamp_header",
            "not signed",
        ),
        (
            {"signature_header": "x-sig", "timestamp_header": "x-ts", "signed_payload": "body"},
            "timestamp_header",
            "not signed",
        ),
        (
            {
                "signature_header": "x-sig",
                "timestamp_header": "x-ts",
                "signed_payload": "timestamp.body",
                "tolerance_seconds": 3601,
            },
            "tolerance_seconds",
            "3600",
        ),
        ({"signature_header": "x-sig", "tolerance_seconds": 10**12}, "tolerance_seconds", "3600"),
    ],
    ids=["unsigned-timestamp", "unsigned-timestamp-explicit", "tolerance-over-1h", "huge"],
)
def test_refuses_a_replay_window_that_protects_nothing(
    fields: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        GenericSchemeConfig.model_validate(fields, context=CONFIGURING)
    (error,) = caught.value.errors(include_url=False)
    assert error["loc"] == (field,)
    assert says in error["msg"]


def test_accepts_a_signed_timestamp_within_an_hour() -> None:
    config = GenericSchemeConfig.model_validate(
        {
            "signature_header": "x-sig",
            "timestamp_header": "x-ts",
            "signed_payload": "timestamp.body",
            "tolerance_seconds": MAX_TOLERANCE_SECONDS,
        },
        context=CONFIGURING,
    )
    assert config.tolerance_seconds == 3600


def test_a_stored_scheme_from_before_the_rules_still_loads() -> None:
    # Connections made before these rules keep verifying their webhooks: ingest reads the
    # stored scheme without the configuring context.
    stored = {"signature_header": "x-sig", "timestamp_header": "x-ts", "tolerance_seconds": 86400}
    assert GenericSchemeConfig.model_validate(stored).tolerance_seconds == 86400
