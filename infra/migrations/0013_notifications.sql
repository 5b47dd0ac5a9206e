-- Issue 20: operational notifications that reach someone. A tenant registers HTTPS
-- endpoints; the outbound service's notifier evaluates conditions (a connection needs
-- re-authorisation, its circuit stays open, dead letters pile up, a sync job failed) and
-- delivers one signed Standard Webhooks message per condition episode, with retries.
CREATE TABLE notification_endpoints (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url              text NOT NULL,
    description      text,
    -- Empty: every event type.
    event_types      text[] NOT NULL DEFAULT '{}',
    -- The whsec_ signing secret, AES-256-GCM under the key ring like webhook secrets.
    secret_encrypted text NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_endpoints_tenant_idx ON notification_endpoints (tenant_id, created_at);

-- One row per (tenant, condition, subject) while the condition holds: when it was first
-- seen and whether it was announced. A condition that clears deletes its row, so the next
-- episode is announced again; one that holds is announced once.
CREATE TABLE notification_conditions (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type  text NOT NULL,
    subject     uuid NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    notified_at timestamptz,
    PRIMARY KEY (tenant_id, event_type, subject)
);

-- The outbox of notifications: one row per endpoint and message, retried on the Standard
-- Webhooks schedule until delivered (2xx) or given up (status failed, its error kept).
CREATE TABLE notification_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id     uuid NOT NULL REFERENCES notification_endpoints (id) ON DELETE CASCADE,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX notification_deliveries_due_idx ON notification_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX notification_deliveries_endpoint_idx
    ON notification_deliveries (endpoint_id, created_at DESC);
