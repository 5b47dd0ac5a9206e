-- Issue 20: a person erased (crmsync privacy erase, POST /v1/privacy/erase) stays erased.
--
-- One row per canonical customer the erase anonymised. The email is not kept: only
-- `identity_hash`, SHA-256 of the tenant id and the normalised email
-- (crmsync.common.tombstones.identity_hash), so the table answers "was this address
-- erased?" without holding the address. The processor refuses, as outcome `erased`, a
-- change of a customer whose link names an erased record (a provider reporting back our
-- own erase, a later edit there) and a customer change carrying an erased email (a later
-- webhook, backfill or reconciliation that would bring the person back). Kept until the
-- tenant is deleted: a tombstone that expires lets the person return.
CREATE TABLE privacy_tombstones (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    entity_id     uuid NOT NULL,
    identity_hash text NOT NULL,
    erased_at     timestamptz NOT NULL DEFAULT now(),
    erased_by     text NOT NULL,
    PRIMARY KEY (tenant_id, entity_id)
);
CREATE INDEX privacy_tombstones_identity_idx ON privacy_tombstones (tenant_id, identity_hash);

-- A refused change is an item dropped on purpose, like the other skips: the ledger counts
-- it skipped (reason erased), not lost.
ALTER TABLE inbound_skips
    DROP CONSTRAINT inbound_skips_reason_check,
    ADD CONSTRAINT inbound_skips_reason_check CHECK (reason IN ('not_synced', 'gone', 'erased'));
