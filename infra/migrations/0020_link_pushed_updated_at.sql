-- The provider's own updated-at of our last write to a record, as its answer reported it
-- (issue 17: the X -> Y -> X revert). The echo of that write carries this time; a later
-- state that happens to hold what we pushed (a user reverting a field) carries a newer
-- one, and is an edit. NULL: links written before this column, or a push whose answer
-- gave no record; the echo rule then falls back to the state hash alone.
ALTER TABLE entity_links ADD COLUMN pushed_updated_at timestamptz;
