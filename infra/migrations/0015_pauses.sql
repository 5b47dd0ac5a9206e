-- Issue 20: pause a connection or a whole tenant, inbound and/or outbound, now or in a
-- scheduled freeze window ("read-only on the wedding day"). Nothing is refused or lost:
-- webhooks are still verified and accepted into Kafka; the processor parks the changes of
-- an inbound pause (waiting_changes, released in order when it ends), and outbound
-- reschedules the pushes of an outbound pause to its end.
--
-- A row is in force while starts_at <= now() < ends_at (no ends_at: until resumed).
-- `crmsync connections pause` starts one now; a freeze window starts later. Resuming ends
-- the rows in force (ends_at = now()), so the history stays.
CREATE TABLE pauses (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- NULL: every connection of the tenant.
    connection_id uuid REFERENCES connections (id) ON DELETE CASCADE,
    inbound       boolean NOT NULL,
    outbound      boolean NOT NULL,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz,
    reason        text,
    kind          text NOT NULL CHECK (kind IN ('pause', 'freeze_window')),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (inbound OR outbound),
    -- Equal: resumed the instant it began.
    CHECK (ends_at IS NULL OR ends_at >= starts_at)
);
CREATE INDEX pauses_tenant_idx ON pauses (tenant_id, starts_at);
