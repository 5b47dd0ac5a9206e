"""How the convergence run reads a simulator's records back (tests/convergence/run.py):
as the connector's client reads them from the provider's API."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import cast

from connectors.ascora.mapping import Mapper as AscoraMapper
from connectors.ascora.simulator import AscoraSimulator
from connectors.generic import CATALOGUE
from connectors.generic.simulator import load_simulated
from connectors.square.mapping import Mapper
from connectors.square.simulator import SquareSimulator
from crmsync.demo.sims import PROFILES, RunningSim, connector_of
from tests.convergence.run import _as_read, _as_typed, held_already
from tests.convergence.stack import System

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


def test_an_edit_to_the_value_its_system_still_shows_is_no_edit() -> None:
    """With ``--overlap`` another system's rename may not have reached Ascora yet when
    Ascora's user "renames" the record to the name Ascora still shows (seed 2's c12 and
    c19). That changes nothing there; the plan expected it to win over the rename."""
    sim, mapper = AscoraSimulator(), AscoraMapper()
    shown = {"name": "Harbour Plumbing", "email": "k1@converge.example"}
    made = sim.create("customer", mapper.from_canonical("customer", shown, {}, {}))
    record_id = mapper.to_canonical("customer", made, {}).external_id
    running = cast(RunningSim, SimpleNamespace(sim=sim))
    crm = System("ascora", running, uuid.uuid4(), {}, mapper, ("customer",))
    edit = {"name": "harbour plumbing ", "phone": "+61 2 5550 0101"}
    assert held_already(crm, "customer", record_id, edit) == {"name"}
    assert held_already(crm, "customer", record_id, {"name": "Bayview Gardens"}) == set()


def test_an_edit_typed_in_a_mapping_file_provider_is_the_record_not_its_api_envelope() -> None:
    """FreshBooks' file wraps create and update bodies (``{"client": …}``); a user types
    the record in its UI. The run passed the wrapped body to the simulator, which stored
    it as a field: every edit made in FreshBooks was lost (seed 1, the generic case)."""
    settings = PROFILES["freshbooks"].settings
    mapper = connector_of("generic", settings).mapper
    assert mapper is not None
    sim = load_simulated(CATALOGUE["freshbooks"])()
    typed = {"name": "Ava Stone", "email": "ava@converge.example"}
    body = mapper.from_canonical("customer", typed, {}, settings)
    assert "client" in body  # the API's envelope
    made = sim.create("customer", _as_typed(sim, "customer", body))
    edit = mapper.from_canonical("customer", {**typed, "name": "Ava Quill"}, {}, settings)
    record_id = str(made["id"])
    sim.update("customer", record_id, _as_typed(sim, "customer", edit))
    read = mapper.to_canonical("customer", sim.store["customer"][record_id], settings)
    assert read.data["name"] == "Ava Quill"
