-- A parked push found by its record (crmsync/common/pushes.not_parked, issue 17). An echo
-- that shows its system fell behind queues the record's version again unless the system
-- refused that version already (an outbound dead letter not redriven). The lookup read
-- every open outbound dead letter of the connection, payload and all, and parsed them in
-- Python: with 10,000 parked on one connection, a sequential scan and 5.7 MB per echo
-- that fell behind. Indexed by (connection, the record the payload names), it reads the
-- record's own few.

-- The record an outbound dead letter's payload names (services/outbound/pusher.py writes
-- {"connection_id", "entity_type", "entity_id", "version", ...} as JSON); NULL for any
-- other payload (an operator's or a test's row need not be JSON: never an error, or that
-- row could not be written). IMMUTABLE for the index: convert_from is only STABLE, for
-- the database encoding it converts to, which never changes for a database.
CREATE FUNCTION dead_letter_entity_id(p_payload bytea) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (convert_from(p_payload, 'UTF8')::jsonb ->> 'entity_id')::uuid;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- The parked pushes not_parked asks for, and only those: its WHERE names the same stage,
-- redriven_at and expression.
CREATE INDEX dead_letters_parked_push_idx
    ON dead_letters (connection_id, dead_letter_entity_id(payload))
 WHERE stage = 'outbound' AND redriven_at IS NULL;
