-- Outbound pushes waiting to happen: one row per (connection, record), always meaning
-- "bring this connection up to the record's latest committed version". A newer change
-- raises the version of the pending row instead of queueing a second push, so retries
-- are state-based and a slow provider never holds up anyone else's records.
CREATE TABLE push_jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id   uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    entity_type     text NOT NULL CHECK (entity_type IN ('customer', 'job', 'invoice', 'payment')),
    entity_id       uuid NOT NULL,
    version         integer NOT NULL,
    change_id       uuid,
    committed_at    timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connection_id, entity_type, entity_id)
);
-- The worker claims due rows oldest first.
CREATE INDEX push_jobs_due_idx ON push_jobs (next_attempt_at);
CREATE INDEX push_jobs_tenant_idx ON push_jobs (tenant_id);
