-- Issue 20: quotas per tenant. A limit that is NULL is no limit; a tenant without a row
-- has none. What is enforced where (crmsync.common.quotas, README "Quotas"):
--   max_connections    creating one more connection is refused (409)
--   events_per_minute  change events ingested per calendar minute (UTC), webhooks and
--                      internal changes alike: the internal API answers 429 past it,
--                      webhooks are accepted and counted, and the tenant is notified
--   max_records        canonical records (not deleted): internal changes that would create
--                      one more are refused (409); provider records are applied, and the
--                      tenant is notified
CREATE TABLE tenant_quotas (
    tenant_id         uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    max_connections   integer CHECK (max_connections >= 0),
    events_per_minute integer CHECK (events_per_minute >= 0),
    max_records       bigint CHECK (max_records >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    updated_by        text NOT NULL
);

-- Events ingested per tenant and calendar minute, summed over every ingest process: each
-- adds what it counted every few seconds (one statement for all tenants), and reads the
-- totals back to approximate the limit across processes. `accepted_over` and `refused`
-- are the events beyond the tenant's rate: webhooks accepted anyway, internal changes
-- answered 429.
-- Rows older than a day are deleted by ingest as it writes.
CREATE TABLE quota_usage (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    window_start  timestamptz NOT NULL,
    events        bigint NOT NULL DEFAULT 0,
    accepted_over bigint NOT NULL DEFAULT 0,
    refused       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, window_start)
);
CREATE INDEX quota_usage_window_idx ON quota_usage (window_start);
