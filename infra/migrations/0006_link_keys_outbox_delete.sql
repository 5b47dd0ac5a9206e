-- Lookups of entity_links by a provider's id must find exactly one usable index.
--
-- The processor and the sync runner look links up by (connection_id, entity_type,
-- external_id). The second unique key, (connection_id, entity_type, entity_id), shares
-- that prefix: on a table PostgreSQL has not analysed yet (a new deployment's first
-- backfill), the planner took it, used its first two columns and filtered external_id,
-- walking every link of the connection for each key (bench/README.md: 2,465 ms for a
-- batch of 500 against 3 ms with the right index). Ordered by entity_id first, that key
-- no longer matches the prefix, and it also serves the lookups by record (entity_id,
-- entity_type), which made entity_links_entity_idx redundant: one index less to write
-- for every link.
--
-- On a large table, rebuilding the key locks entity_links for the duration; run this
-- migration in a quiet moment.
ALTER TABLE entity_links
    DROP CONSTRAINT entity_links_connection_id_entity_type_entity_id_key,
    ADD CONSTRAINT entity_links_entity_connection_key UNIQUE (entity_id, entity_type, connection_id);
DROP INDEX entity_links_entity_idx;

-- Analyse the link and record tables early: a first backfill inserts hundreds of
-- thousands of rows, and the default threshold (10 % of the table, re-counted once a
-- minute) leaves the planner without statistics for most of it.
ALTER TABLE entity_links SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
ALTER TABLE customers SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
ALTER TABLE jobs SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
ALTER TABLE invoices SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
ALTER TABLE payments SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);

-- The outbox relay deletes a row once Kafka acknowledged it, in the transaction that read
-- it (records.changed is the record of what was published). Marking rows published
-- instead rewrote every ~1 KB row once more and kept them for ever.
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX outbox_unpublished_idx;
ALTER TABLE outbox DROP COLUMN published_at;
