-- Canonical records, their links to each connection, and the processor's bookkeeping:
-- dedup, outbox, dead letters, parked conflicts, sync log.
--
-- A record keeps its canonical state in `data` (the schemas.records model as JSON) and,
-- per field, the source timestamp and connection its value came from in `field_meta`
-- ({"email": {"ts": "...", "source": "<connection id>"}}): what the field-level merge
-- and the conflict policies compare. Columns the matcher looks up are generated from
-- `data`, so they can never disagree with it.

CREATE TABLE customers (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version          integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    data             jsonb NOT NULL,
    field_meta       jsonb NOT NULL DEFAULT '{}'::jsonb,
    deleted_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Matching a customer first seen from a new connection: by normalised email.
    email_normalized text GENERATED ALWAYS AS (lower(btrim(data ->> 'email'))) STORED
);
CREATE INDEX customers_tenant_email_idx ON customers (tenant_id, email_normalized)
    WHERE deleted_at IS NULL AND email_normalized IS NOT NULL;
CREATE INDEX customers_tenant_updated_idx ON customers (tenant_id, updated_at);

CREATE TABLE jobs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    data        jsonb NOT NULL,
    field_meta  jsonb NOT NULL DEFAULT '{}'::jsonb,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    customer_id uuid GENERATED ALWAYS AS ((data ->> 'customer_id')::uuid) STORED
);
CREATE INDEX jobs_tenant_updated_idx ON jobs (tenant_id, updated_at);
CREATE INDEX jobs_customer_idx ON jobs (customer_id) WHERE customer_id IS NOT NULL;

CREATE TABLE invoices (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    data        jsonb NOT NULL,
    field_meta  jsonb NOT NULL DEFAULT '{}'::jsonb,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Matching an invoice first seen from a new connection: by its number.
    number      text GENERATED ALWAYS AS (data ->> 'number') STORED,
    status      text GENERATED ALWAYS AS (data ->> 'status') STORED
);
CREATE INDEX invoices_tenant_number_idx ON invoices (tenant_id, number)
    WHERE deleted_at IS NULL AND number IS NOT NULL;
CREATE INDEX invoices_tenant_status_idx ON invoices (tenant_id, status);
CREATE INDEX invoices_tenant_updated_idx ON invoices (tenant_id, updated_at);

CREATE TABLE payments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    data        jsonb NOT NULL,
    field_meta  jsonb NOT NULL DEFAULT '{}'::jsonb,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Matching a payment first seen from a new connection: by its reference.
    reference   text GENERATED ALWAYS AS (data ->> 'reference') STORED
);
CREATE INDEX payments_tenant_reference_idx ON payments (tenant_id, reference)
    WHERE deleted_at IS NULL AND reference IS NOT NULL;
CREATE INDEX payments_tenant_updated_idx ON payments (tenant_id, updated_at);

-- Canonical record <-> a connection's record. No foreign key to the record: it lives in
-- one of four tables, named by entity_type.
CREATE TABLE entity_links (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id      uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    entity_type        text NOT NULL CHECK (entity_type IN ('customer', 'job', 'invoice', 'payment')),
    entity_id          uuid NOT NULL,
    external_id        text NOT NULL,
    -- What this connection last told us (hash + snapshot: the base of the field-level merge)
    last_seen_hash     text,
    last_seen_snapshot jsonb,
    -- What we last pushed to it: an echo of this hash is no change.
    last_pushed_hash   text,
    last_pushed_version integer,
    remote_version     text,
    remote_updated_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connection_id, entity_type, external_id),
    UNIQUE (connection_id, entity_type, entity_id)
);
CREATE INDEX entity_links_entity_idx ON entity_links (entity_type, entity_id);

-- Dedup: one row per (connection, provider event id), written in the same transaction as
-- the change it caused. processed_at lets old rows be pruned past the providers' retry
-- horizons (Stripe retries for up to 3 days).
CREATE TABLE processed_events (
    connection_id     uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    provider_event_id text NOT NULL,
    processed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, provider_event_id)
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);

-- One row per committed change; the relay publishes unpublished rows in id order.
CREATE TABLE outbox (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id            uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    entity_type          text NOT NULL,
    entity_id            uuid NOT NULL,
    version              integer NOT NULL,
    origin_connection_id uuid REFERENCES connections (id) ON DELETE SET NULL,
    payload              jsonb NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    published_at         timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE dead_letters (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stage         text NOT NULL CHECK (stage IN ('ingest', 'processor', 'hydrate', 'outbound')),
    reason        text NOT NULL,
    detail        text,
    tenant_id     uuid REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id uuid REFERENCES connections (id) ON DELETE SET NULL,
    topic         text,
    kafka_partition integer,
    kafka_offset  bigint,
    record_key    bytea,
    payload       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    redriven_at   timestamptz,
    discarded_at  timestamptz
);
CREATE INDEX dead_letters_open_idx ON dead_letters (stage, reason, created_at)
    WHERE redriven_at IS NULL AND discarded_at IS NULL;
CREATE INDEX dead_letters_connection_idx ON dead_letters (connection_id, created_at);

CREATE TABLE conflicts (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    entity_type            text NOT NULL,
    entity_id              uuid NOT NULL,
    field                  text NOT NULL,
    current_value          jsonb,
    incoming_value         jsonb,
    incoming_connection_id uuid REFERENCES connections (id) ON DELETE SET NULL,
    incoming_source_ts     timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    resolved_at            timestamptz,
    resolution             jsonb
);
CREATE INDEX conflicts_open_idx ON conflicts (tenant_id, created_at) WHERE resolved_at IS NULL;
CREATE INDEX conflicts_entity_idx ON conflicts (entity_type, entity_id);

CREATE TABLE sync_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id uuid REFERENCES connections (id) ON DELETE SET NULL,
    direction     text NOT NULL CHECK (direction IN ('in', 'out')),
    entity_type   text,
    entity_id     uuid,
    external_id   text,
    outcome       text NOT NULL,
    latency_ms    integer,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_log_connection_idx ON sync_log (connection_id, created_at DESC);
CREATE INDEX sync_log_tenant_idx ON sync_log (tenant_id, created_at DESC);
