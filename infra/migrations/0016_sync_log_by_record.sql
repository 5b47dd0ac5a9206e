-- One record's events (GET /v1/sync-log?entity_id=, the console's record page and its
-- Events filter): newest first within a tenant, without reading the tenant's whole log.
CREATE INDEX sync_log_entity_idx ON sync_log (tenant_id, entity_id, id DESC)
    WHERE entity_id IS NOT NULL;
