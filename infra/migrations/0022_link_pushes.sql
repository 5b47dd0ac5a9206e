-- Our last few writes to a linked record, oldest first, the last one included (issue 17):
-- [{"hash": <state hash of the provider's answer>, "at": <its updated-at, or null>}, ...].
-- Two writes to one record within a second (QuickBooks stamps whole seconds, Stripe's
-- client stamps reads just before their second): the provider's read-back of the first can
-- reach the processor after the second, stamped as our last write. last_pushed_hash knows
-- only the last write, so that state was taken for a user's edit and pushed everywhere (a
-- lost edit). A state equal to one of these writes, stamped no later than the write that
-- replaced it, is that write read back (services/processor/decide.py, rule 5a).
-- Empty: links written before this column; the echo rule then knows the last write only.
ALTER TABLE entity_links ADD COLUMN pushes jsonb NOT NULL DEFAULT '[]';

-- The link's pushes after one more write: appended when the write has a state hash (a
-- push whose answer gave no record has none, and leaves them as they are), the oldest
-- dropped beyond 5. Five: the runs that lost an edit had two writes in one second; a
-- read-back is hydrated within a few seconds even under load (the processor's received ->
-- committed p99 6.5 s at load 17, stop29 notes) and the runner's operations on one record
-- are a second or more apart, so a read-back comes within a few writes.
CREATE FUNCTION link_pushes_after(p_pushes jsonb, p_hash text, p_updated_at timestamptz)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_hash IS NULL THEN coalesce(p_pushes, '[]'::jsonb) ELSE (
        SELECT coalesce(jsonb_agg(w.write ORDER BY w.n), '[]'::jsonb)
          FROM jsonb_array_elements(
                   coalesce(p_pushes, '[]'::jsonb)
                   || jsonb_build_array(jsonb_build_object('hash', p_hash, 'at', p_updated_at))
               ) WITH ORDINALITY AS w(write, n)
         WHERE w.n > jsonb_array_length(coalesce(p_pushes, '[]'::jsonb)) + 1 - 5
    ) END
$$;
