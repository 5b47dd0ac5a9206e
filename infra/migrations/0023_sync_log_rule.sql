-- Which rule of the processor's apply table decided an inbound change
-- (services/processor/decide.py: echo, earlier_push, status_behind, older_than_seen, ...),
-- finer than its outcome (issue 17): an echo of our last push (rule 5) and the read-back of
-- an earlier one that reached us after a later push (rule 5a, earlier_push) share the
-- outcome echo, which the ledger counts, so an operator tells them apart by this column.
-- Not in `error`: a rule is no failure, and the connection's health counts rows with an
-- error. NULL: outbound rows, inbound rows no rule decided (a duplicate, an erased person,
-- a paused connection, a dead letter), and rows written before this column.
ALTER TABLE sync_log ADD COLUMN rule text;
