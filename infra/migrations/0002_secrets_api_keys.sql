-- Webhook secrets (several per connection while one rotates out) and hashed API keys.
-- Secrets are AES-256-GCM ciphertexts (crmsync.common.crypto); keys are SHA-256 hashes.

ALTER TABLE connections
    ADD COLUMN base_url text,
    ADD COLUMN credentials_encrypted text;

CREATE TABLE webhook_secrets (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    connection_id    uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    secret_encrypted text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- NULL: current. Set when rotated out; it still verifies until then (overlap window).
    expires_at       timestamptz
);
CREATE INDEX webhook_secrets_connection_idx ON webhook_secrets (connection_id, created_at);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Set for the publish key of an `internal` connection.
    connection_id uuid REFERENCES connections (id) ON DELETE CASCADE,
    scope         text NOT NULL CHECK (scope IN ('admin', 'read', 'publish')),
    key_hash      text NOT NULL UNIQUE,
    -- The first characters, kept so an operator can tell keys apart; not a secret.
    key_prefix    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);
