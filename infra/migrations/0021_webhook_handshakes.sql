-- A provider's subscription handshake (FreshBooks' callback.verify, connectors/generic
-- config Verification): the provider posts an unsigned code, and delivers nothing until
-- the code is sent back over our authenticated API; the code then signs its webhooks.
-- Ingest stores what it received here (the code encrypted, like a webhook secret); the
-- outbound service sends it back and, once the provider accepted it, makes it the
-- connection's webhook secret. Only a connection that awaits a handshake takes one, so an
-- unsigned post can never replace a secret in use: a code becomes a secret only once the
-- provider accepted it back, and it is added beside the others, never instead of them.

-- Until when the connection takes handshakes: set at its creation (a mapping that declares
-- one, and no secret given) and by an operator's `connections await-handshake`. A provider
-- may post several (FreshBooks: one per callback, each callback its own code), so a
-- confirmed one does not end the window; each confirmed code is one more current secret.
ALTER TABLE connections ADD COLUMN handshakes_until timestamptz;

CREATE TABLE webhook_handshakes (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    connection_id      uuid NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- AES-256-GCM, bound to the connection as its webhook secrets are.
    verifier_encrypted text NOT NULL,
    -- The values the confirm endpoint's placeholders take (callback id, account id).
    placeholders       jsonb NOT NULL,
    state              text NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'confirmed', 'refused', 'failed')),
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    last_error         text,
    received_at        timestamptz NOT NULL DEFAULT now(),
    settled_at         timestamptz
);
CREATE INDEX webhook_handshakes_due_idx ON webhook_handshakes (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_handshakes_connection_idx ON webhook_handshakes (connection_id, state);
