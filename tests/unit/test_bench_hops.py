"""bench.hops: an event's hops from the topics' timestamps and its sync_log rows."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.hops import HOPS, spans_of


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def test_each_hop_is_the_time_between_its_two_stamps() -> None:
    received = 1_800_000_000.0
    raw = [(received + 0.002, {"received_at": _iso(received)})]
    normalized = [
        (
            received + 0.050,
            {"received_at": _iso(received), "change": {"external_id": "cus_1"}},
        )
    ]
    committed = received + 0.130
    published = [(received + 0.150, {"entity_id": "e-1", "committed_at": _iso(committed)})]
    # in: received → committed; out: committed_at → pushed (at received + 0.400).
    rows = [{"external_id": "cus_1", "entity_id": "e-1", "in_ms": 130, "out_ms": 270}]

    spans = spans_of(raw, normalized, published, rows)

    got = {hop: round(values[0]) for hop, values in spans.items()}
    assert got == {"ingest": 2, "normalize": 48, "apply": 80, "relay": 20, "outbound": 250}
    assert list(spans) == [hop for hop, _, _ in HOPS]


def test_an_event_missing_anywhere_is_left_out() -> None:
    received = 1_800_000_000.0
    normalized = [
        (received + 0.05, {"received_at": _iso(received), "change": {"external_id": "cus_1"}})
    ]
    # Applied but never pushed (no 'out' row), and a second event never published.
    rows = [
        {"external_id": "cus_1", "entity_id": "e-1", "in_ms": 100, "out_ms": None},
        {"external_id": "cus_2", "entity_id": "e-2", "in_ms": 100, "out_ms": 50},
    ]
    published = [(received + 0.2, {"entity_id": "e-1", "committed_at": _iso(received + 0.1)})]

    spans = spans_of([], normalized, published, rows)

    assert all(values == [] for values in spans.values())
