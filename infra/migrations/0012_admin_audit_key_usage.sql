-- Issue 20: who changed what. Every mutating admin operation (API, CLI, console) writes one
-- row in the same transaction as its change, so a change without its row cannot commit.
-- `actor` is "api-key:<id>" for the API and console, "cli:<OS user>" for the CLI; `change`
-- is the request with secrets replaced by "[redacted]". Tenant-scoped like everything else;
-- kept until an operator deletes it (an audit trail that expires on its own is not one).
CREATE TABLE admin_audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   uuid,
    change      jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- Newest first per tenant, and "what happened to this one".
CREATE INDEX admin_audit_log_tenant_idx ON admin_audit_log (tenant_id, id DESC);
CREATE INDEX admin_audit_log_target_idx ON admin_audit_log (tenant_id, target_id)
    WHERE target_id IS NOT NULL;

-- Requests per API key per UTC day. Counted in memory and added by the same batched flush
-- that keeps api_keys.last_used_at (crmsync.common.apikeys.LastUsedRecorder): no write
-- per request. Deleted with the key.
CREATE TABLE api_key_usage (
    key_id   uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    day      date NOT NULL,
    requests bigint NOT NULL CHECK (requests >= 0),
    PRIMARY KEY (key_id, day)
);
