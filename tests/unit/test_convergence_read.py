"""How the convergence run reads a simulator's records back (tests/convergence/run.py):
as the connector's client reads them from the provider's API."""

from __future__ import annotations

from connectors.square.mapping import Mapper
from connectors.square.simulator import SquareSimulator
from tests.convergence.run import _as_read

INVOICE = {
    "number": "CV-I1",
    "status": "open",
    "currency": "AUD",
    "due_on": "2026-12-31",
    "lines": [{"description": "Work i1", "quantity": "1", "unit_amount": 10_000}],
}
PAYMENT = {"amount": 1_000, "currency": "AUD", "status": "succeeded", "reference": "CV-P1"}


def test_a_square_payment_reads_back_with_the_invoice_billing_its_order() -> None:
    """Square's Payment names only the order it paid; the client reads it with the invoice
    billing that order. The run read the bare payment, so every Square payment's invoice
    "differed" from canonical (7 of 7 in a seed-3 run with Square)."""
    sim, mapper = SquareSimulator(), Mapper()
    customer = sim.create("customer", mapper.from_canonical("customer", {"name": "Ava"}, {}, {}))
    refs = {"customer_id": customer["id"]}
    earlier = {**INVOICE, "number": "CV-I0"}
    other = sim.create("invoice", mapper.from_canonical("invoice", earlier, refs, {}))
    invoice = sim.create("invoice", mapper.from_canonical("invoice", INVOICE, refs, {}))
    paid = {"invoice_id": invoice["id"]}
    payment = sim.create("payment", mapper.from_canonical("payment", PAYMENT, paid, {}))
    read = mapper.to_canonical("payment", _as_read(sim, "payment", payment), {})
    assert read.refs["invoice_id"] == invoice["id"] != other["id"]
