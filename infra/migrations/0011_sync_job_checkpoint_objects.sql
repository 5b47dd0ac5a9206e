-- sync_jobs.checkpoint was written as the checkpoint's JSON text through a pool whose codec
-- encodes jsonb itself, so each backfill's row held a jsonb *string* holding the object
-- (double encoding). The admin API and `crmsync sync-jobs list` read it as an object and
-- failed on it. Writers now pass the object; this turns the strings already stored back
-- into the objects they spell, so old runs list and resume from their cursors.
UPDATE sync_jobs
   SET checkpoint = (checkpoint #>> '{}')::jsonb
 WHERE jsonb_typeof(checkpoint) = 'string';
