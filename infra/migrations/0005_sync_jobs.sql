-- Backfills and reconciliation runs: one row per run, checkpointed per entity type so a
-- run that was killed continues where it stopped instead of starting over.
--
-- `checkpoint` holds, per entity type, the provider's next-page cursor and whether that
-- type is done: {"customer": {"cursor": "...", "done": false, "seen": 1200}}. It is written
-- after the page's changes were acknowledged by Kafka, so a resumed run repeats at most
-- one page, which the pipeline's idempotent upsert absorbs.
CREATE TABLE sync_jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id    uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    -- backfill: every record; reconcile: records modified since `modified_since`;
    -- full_reconcile: every record plus a comparison that finds deletes.
    kind             text NOT NULL CHECK (kind IN ('backfill', 'reconcile', 'full_reconcile')),
    entity_types     text[] NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    modified_since   timestamptz,
    checkpoint       jsonb NOT NULL DEFAULT '{}'::jsonb,
    records_seen     bigint NOT NULL DEFAULT 0,
    -- Reconciliation: records whose provider state differed from what we last saw, and
    -- links whose record the provider no longer has.
    records_changed  bigint NOT NULL DEFAULT 0,
    records_deleted  bigint NOT NULL DEFAULT 0,
    error            text,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- Who runs it: a runner holds the lease and renews it; a dead runner's job is taken
    -- over when the lease runs out.
    lease_owner      text,
    lease_expires_at timestamptz,
    requested_by     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX sync_jobs_connection_idx ON sync_jobs (connection_id, created_at DESC);
CREATE INDEX sync_jobs_runnable_idx ON sync_jobs (created_at)
    WHERE status IN ('pending', 'running');
-- One active run of a kind per connection: starting a second backfill while one runs
-- resumes that one instead.
CREATE UNIQUE INDEX sync_jobs_one_active_idx ON sync_jobs (connection_id, kind)
    WHERE status IN ('pending', 'running');

-- When each connection was last reconciled (the next modified-since poll starts there).
ALTER TABLE connections
    ADD COLUMN last_reconciled_at timestamptz,
    ADD COLUMN last_full_reconcile_at timestamptz;

-- A full comparison remembers every id the provider listed (written with each page, so a
-- resumed run keeps what it saw); links whose id is missing at the end were deleted at the
-- provider. Emptied when the run finishes.
CREATE TABLE sync_job_seen (
    job_id      uuid NOT NULL REFERENCES sync_jobs (id) ON DELETE CASCADE,
    entity_type text NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (job_id, entity_type, external_id)
);
