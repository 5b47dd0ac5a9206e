"""Each connector's capabilities.toml is read into the same rows the matrix and the checks
in test_capabilities.py use, and a file that says something it cannot mean is refused with
its name and the cell."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import registry
from connectors.capabilities import FULL_WEBHOOK, Can, KindSupport, declared, parse_declared
from connectors.spec import ENTITY_TYPES

ROOT = Path(__file__).parents[3]
# Declared in Python: standard-webhooks maps nothing (webhook_only), generic's rows are its
# mapping file's, internal has no connector.
NOT_IN_TOML = ("standard-webhooks", "generic", "internal")
IN_TOML = tuple(slug for slug in registry.PROVIDERS if slug not in NOT_IN_TOML)

# A file whose other kinds are absent, so a test writes only the table it is about.
OTHERS_ABSENT = '[job]\nabsent = "no jobs"\n[invoice]\nabsent = "no invoices"\n'
OTHERS_ABSENT += '[payment]\nabsent = "no payments"\n'


def _customer(*cells: str) -> str:
    columns = dict.fromkeys(
        ("webhook", "hydrate", "backfill", "reconcile", "create", "update", "delete"), '"yes"'
    )
    columns["payment"] = '"na"'
    # A cell given replaces its column's default: `update.partly = "..."` replaces update.
    written = {cell.split(" = ")[0].split(".")[0]: cell for cell in cells}
    lines = [written.pop(c, f"{c} = {v}") for c, v in columns.items()]
    lines.extend(written.values())
    return "[customer]\n" + "\n".join(lines) + "\n" + OTHERS_ABSENT


@pytest.mark.parametrize("slug", IN_TOML)
def test_every_connector_reads_its_rows_from_its_capabilities_file(slug: str) -> None:
    package = f"connectors.{slug}"
    # In the wheel too: tests/unit/connectors/test_declared.py checks its package-data.
    assert (ROOT / "connectors" / slug / "capabilities.toml").is_file()
    assert declared(package) == registry.CAPABILITIES[slug]
    assert tuple(registry.CAPABILITIES[slug]) == ENTITY_TYPES


def test_a_cell_is_a_support_word_or_one_support_with_its_reason() -> None:
    rows = parse_declared(
        _customer('update.partly = "the e-mail is fixed"', 'delete.no = "never"'), "t.toml"
    )
    row = rows["customer"]
    assert row.webhook == Can("yes")
    assert row.payment == Can("n/a")
    assert row.update == Can("partial", "the e-mail is fixed")
    assert row.delete == Can("no", "never")
    assert rows["job"] == KindSupport.absent("no jobs")


def test_a_named_reason_reads_the_same_in_every_cell_that_names_it() -> None:
    text = '[reasons]\nthin = "fetched"\n' + _customer(
        'hydrate.yes = "@thin"', 'reconcile.yes = "@thin"', 'create.na = "@full_webhook"'
    )
    row = parse_declared(text, "t.toml")["customer"]
    assert row.hydrate == row.reconcile == Can("yes", "fetched")
    assert row.create == Can("n/a", FULL_WEBHOOK)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_customer('update = "maybe"'), r"t\.toml: customer\.update: 'maybe' is not one of"),
        (_customer('update.no = "@nowhere"'), r"customer\.update: no reason named 'nowhere'"),
        (_customer('update = { no = "a", yes = "b" }'), r"customer\.update: a cell is a"),
        (_customer("update.no = 3"), r"customer\.update: the reason is a string"),
        (_customer('update = "no"'), "needs its reason"),
        (_customer('refund = "yes"'), r"customer: missing \[\], unknown \['refund'\]"),
        (_customer().replace('delete = "yes"\n', ""), r"missing \['delete'\]"),
        (_customer() + '[order]\nabsent = "x"\n', r"t\.toml: declares .*'order'"),
        (_customer().replace("[payment]", "[payments]"), r"declares .*'payments'"),
        ("[customer\n", r"t\.toml: "),
    ],
    ids=[
        "unknown-support",
        "unknown-reason",
        "two-supports",
        "reason-not-text",
        "no-without-reason",
        "unknown-column",
        "missing-column",
        "unknown-kind",
        "missing-kind",
        "not-toml",
    ],
)
def test_a_file_that_cannot_mean_a_row_is_refused_naming_the_cell(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_declared(text, "t.toml")
