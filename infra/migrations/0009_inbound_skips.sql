-- The ledger (DESIGN invariant 13) accounts for every event ingest acknowledged. Most
-- fates are rows already: processed_events (applied, or a duplicate of one applied) and
-- dead_letters (parked, with the record's own event id in its payload). An item of a
-- webhook that the normalizer drops on purpose leaves none:
--
-- * not_synced: the connection's settings (direction, entity_types, disabled) exclude it;
--   the provider still sends it, one webhook subscription covering every type.
-- * gone: a thin webhook's record the provider no longer has (its delete comes as an
--   event of its own).
--
-- Without a row the ledger could only guess the first from today's settings and could
-- not tell the second from a lost event. One row per (connection, item event id), written
-- by crmsync.common.accounting.record_inbound_skips before the envelope's offset is
-- committed, the way the apply step writes processed_events: a redelivery finds it there.
-- Pruned with processed_events, past the same retention.
CREATE TABLE inbound_skips (
    connection_id     uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    provider_event_id text NOT NULL,
    reason            text NOT NULL CHECK (reason IN ('not_synced', 'gone')),
    skipped_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, provider_event_id)
);
CREATE INDEX inbound_skips_skipped_at_idx ON inbound_skips (skipped_at);
