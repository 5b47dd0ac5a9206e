"""``crmsync run --workers N``: which processes it starts, on which ports and data
directories (issue 18: more than one worker of each service, on one machine)."""

from __future__ import annotations

import pytest

from crmsync.cli.run import _workers


def test_two_workers_of_processor_and_outbound_each_on_ports_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRMSYNC_PROCESSOR_DATA_DIR", "/var/lib/crmsync/processor")
    # The default ports are what this reads: a second local stack's ports (set in the
    # environment of whoever runs the suite beside another) are not.
    for name in ("PROCESSOR_HOST", "PROCESSOR_PORT", "OUTBOUND_HOST", "OUTBOUND_PORT"):
        monkeypatch.delenv(f"CRMSYNC_{name}", raising=False)
    planned = {
        label: (service, address, extra)
        for label, service, address, extra in _workers(["processor", "outbound"], 2)
    }
    assert list(planned) == ["processor", "processor-2", "outbound", "outbound-2"]
    assert planned["processor"] == ("processor", ("127.0.0.1", 9101), {})
    assert planned["processor-2"] == (
        "processor",
        ("127.0.0.1", 9201),
        {
            "CRMSYNC_PROCESSOR_PORT": "9201",
            "CRMSYNC_PROCESSOR_DATA_DIR": "/var/lib/crmsync/processor-2",
        },
    )
    assert planned["outbound-2"] == (
        "outbound",
        ("127.0.0.1", 9202),
        {"CRMSYNC_OUTBOUND_PORT": "9202"},
    )
    ports = [address[1] for _, address, _ in planned.values()]
    assert len(ports) == len(set(ports))


def test_services_that_do_not_scale_out_start_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSYNC_MASTER_KEYS", "k1:" + "A" * 43 + "=")
    labels = [label for label, *_ in _workers(["ingest", "admin", "outbound"], 3)]
    assert labels == ["ingest", "admin", "outbound", "outbound-2", "outbound-3"]
