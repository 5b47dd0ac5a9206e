"""A fixed connector's connector.toml joined with its code: the sheet gives the facts, the
code the scheme, mapper and client, and a sheet that says something it cannot mean is
refused naming the file and the field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from connectors.base import NoWebhooksScheme
from connectors.declared import declared_connector, parse_connector
from connectors.registry import PROVIDERS, connector
from connectors.spec import ApiSpec, RateLimit

ROOT = Path(__file__).parents[3]
# Declared in code: bare Standard Webhooks has no API; generic's connector is its
# connection's mapping file; internal has no connector.
IN_TOML = tuple(
    slug for slug in registry.PROVIDERS if slug not in ("standard-webhooks", "generic", "internal")
)
SCHEME = NoWebhooksScheme()
SHEET = """
slug = "acme"
kept_headers = ["content-type"]

[api]
entity_types = ["customer", "invoice"]
rate_limit = { rate = 10, per_seconds = 1.0, burst = 20 }
auth_kind = "oauth2"
token_url = "/oauth/token"
deletable = ["customer"]
update_precondition = "read"
"""


def make_client(*args: Any) -> Any:
    raise AssertionError("not called")


def _parse(text: str = SHEET, **code: Any) -> Any:
    return parse_connector(text, "acme/connector.toml", scheme=SCHEME, **code)


@pytest.mark.parametrize("slug", IN_TOML)
def test_every_fixed_connector_is_its_sheet_joined_with_its_code(slug: str) -> None:
    sheet = ROOT / "connectors" / slug / "connector.toml"
    with sheet.open("rb") as f:
        facts = tomllib.load(f)
    connector = registry.connector(slug)
    assert connector.slug == facts["slug"] == slug
    assert connector.api is not None
    assert connector.api.entity_types == tuple(facts["api"]["entity_types"])
    assert connector.webhooks is facts.get("webhooks", True)


def test_the_wheel_ships_every_connector_sheet_and_capabilities_file() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        globs = tomllib.load(f)["tool"]["setuptools"]["package-data"]["connectors"]
    shipped = {p for g in globs for p in (ROOT / "connectors").glob(g)}
    sheets = {
        ROOT / "connectors" / slug / name
        for slug in IN_TOML
        for name in ("connector.toml", "capabilities.toml")
    }
    assert sheets <= shipped


def test_the_sheet_gives_the_facts_and_the_code_the_rest() -> None:
    connector = _parse(make_client=make_client)
    assert connector.slug == "acme"
    assert connector.scheme is SCHEME
    assert connector.kept_headers == ("content-type",)
    assert connector.webhooks is True
    assert connector.api == ApiSpec(
        entity_types=("customer", "invoice"),
        rate_limit=RateLimit(rate=10, per_seconds=1.0, burst=20),
        auth_kind="oauth2",
        make_client=make_client,
        token_url="/oauth/token",
        deletable=("customer",),
        update_precondition="read",
    )


def test_code_may_give_what_it_computes_but_not_what_the_sheet_says() -> None:
    rate = RateLimit(rate=2.0, per_seconds=1, burst=40)
    text = SHEET.replace("rate_limit = { rate = 10, per_seconds = 1.0, burst = 20 }\n", "")
    connector = _parse(text, make_client=make_client, rate_limit=rate)
    assert connector.api is not None
    assert connector.api.rate_limit is rate
    with pytest.raises(ValueError, match=r"api: \['rate_limit'\] given by the code too"):
        _parse(make_client=make_client, rate_limit=rate)
    headers = ("content-type", "x-acme-topic")
    assert (
        _parse(
            text.replace('kept_headers = ["content-type"]\n', ""),
            make_client=make_client,
            rate_limit=rate,
            kept_headers=headers,
        ).kept_headers
        == headers
    )


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        (SHEET.replace('slug = "acme"\n', ""), {}, "slug: the provider's slug is required"),
        (SHEET + "sandbox = true\n", {}, r"api: unknown \['sandbox'\]"),
        ("colour = 1\n" + SHEET, {}, r"connector\.toml: unknown \['colour'\]"),
        (SHEET.replace('"oauth2"', '"oauth1"'), {}, r"api\.auth_kind: 'oauth1' is not one of"),
        (SHEET.replace('"read"', '"always"'), {}, r"update_precondition: 'always' is not"),
        (SHEET.replace('["customer"]', '["order"]'), {}, r"api\.deletable: a list of customer"),
        (SHEET.replace("burst = 20", "bursts = 20"), {}, "unexpected keyword argument 'bursts'"),
        (SHEET, {"kept_headers": ("a",)}, "kept_headers: in the file or from the code, once"),
        (SHEET.replace('kept_headers = ["content-type"]\n', ""), {}, "kept_headers: in the"),
        ('webhooks = "no"\n' + SHEET, {}, "webhooks: true or false"),
        (SHEET.split("[api]", maxsplit=1)[0], {"make_client": make_client}, r"for an \[api\]"),
        ("slug = [", {}, r"acme/connector\.toml: "),
        (SHEET + 'holds_back = "drafts"\n', {}, r"api\.holds_back: 'drafts' is not one of"),
        (SHEET + 'holds_back = "pending_payments"\n', {}, r"holds_back: .*the sheet's name"),
        ("name = 1\n" + SHEET, {}, "name: the provider's name, a string"),
        (SHEET + 'versions_ordered = "yes"\n', {}, r"api\.versions_ordered: true or false"),
    ],
    ids=[
        "no-slug",
        "unknown-api-field",
        "unknown-key",
        "unknown-auth",
        "unknown-precondition",
        "unknown-kind",
        "bad-rate-limit",
        "headers-twice",
        "headers-nowhere",
        "webhooks-not-bool",
        "code-without-api",
        "not-toml",
        "unknown-holds-back",
        "holds-back-without-name",
        "name-not-text",
        "versions-ordered-not-bool",
    ],
)
def test_a_sheet_that_cannot_mean_a_connector_is_refused_naming_the_field(
    text: str, code: dict[str, Any], message: str
) -> None:
    if "[api]" in text:
        code = {"make_client": make_client, **code}
    with pytest.raises(ValueError, match=message):
        _parse(text, **code)


def test_a_sheet_may_name_the_pending_payments_rule_for_what_the_provider_cannot_hold() -> None:
    """A provider that records money received only holds a pending payment back until it
    succeeds; the sheet says so by naming the rule, the reason names the provider."""
    api = _parse(
        'name = "Acme"\n' + SHEET + 'holds_back = "pending_payments"\n', make_client=make_client
    ).api
    assert api is not None
    assert api.holds_back is not None
    assert api.holds_back("payment", {"status": "pending"}) == (
        "Acme records money received only: a pending payment waits until it succeeds"
    )
    assert api.holds_back("payment", {"status": "succeeded"}) is None
    assert api.holds_back("invoice", {"status": "pending"}) is None
    # A rule of the provider's own stays code, and not both.
    with pytest.raises(ValueError, match=r"\['holds_back'\] given by the code too"):
        _parse(
            'name = "Acme"\n' + SHEET + 'holds_back = "pending_payments"\n',
            make_client=make_client,
            holds_back=lambda kind, data: None,
        )


def test_a_package_without_a_sheet_is_not_a_declared_connector() -> None:
    with pytest.raises(FileNotFoundError):
        declared_connector("connectors.generic", scheme=SCHEME)


def test_paypal_declares_its_customers_listed_partly() -> None:
    """PayPal lists customers only as its invoices' recipients: a full reconciliation must
    infer no customer delete. Its connector.toml lost the declaration when the facts moved
    there (main: the PayPal convergence case deleted 4 live customers in every system)."""
    api = registry.connector("paypal").api
    assert api is not None
    assert api.listed_partly == ("customer",)


def test_quickbooks_declares_its_versions_ordered_and_no_other_provider_does() -> None:
    # SyncToken rises with every write (connectors/quickbooks/connector.toml); MYOB's
    # RowVersion is opaque to us, and no other provider's version orders anything.
    fixed = [connector(p) for p in PROVIDERS if p not in ("generic", "internal")]
    ordered = {c.slug for c in fixed if c.api is not None and c.api.versions_ordered}
    assert ordered == {"quickbooks"}
