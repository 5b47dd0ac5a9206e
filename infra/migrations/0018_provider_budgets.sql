-- Issue 18: a connection's provider budget (its token bucket) and its circuit breaker,
-- shared by every process that calls the provider: the processor's hydrations, every
-- outbound worker's pushes, sync runs and the CLI. Each process used to keep its own in
-- memory, so two workers spent Xero's 60 calls a minute twice and each thought the
-- provider healthy while the other saw it fail.
--
-- UNLOGGED: written on every provider call, read by nobody else, worthless after a crash
-- (a bucket that starts full again, a breaker that starts closed); no WAL, no fsync wait
-- while the row is locked. Time is PostgreSQL's clock_timestamp(), one clock for every
-- host.
--
-- The bucket is a reservation: a caller takes the next token even when it is not free yet
-- (tokens go below zero) and waits the time it was told before calling, so callers in
-- every process queue in the order they asked, with one round trip each. A caller that
-- would wait longer than it is willing to takes nothing. A caller may ask for several
-- tokens (p_want): it gets as many as are free now, at least one, and spends them itself
-- within a quarter of a second (connectors.limits.HOLD_SECONDS), so a high limit does not
-- cost a round trip per call.
--
-- The breaker decides over the last `window` calls of every process: failures are
-- reported at once (they are rare and already slow), successes are counted by each
-- process and added with its next admission, so a success costs no round trip. The
-- window is approximate: past `window` calls, both counts are scaled down to it.
CREATE UNLOGGED TABLE provider_budgets (
    connection_id uuid PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    tokens        double precision NOT NULL,
    refilled_at   timestamptz NOT NULL,
    calls         double precision NOT NULL DEFAULT 0,
    failures      double precision NOT NULL DEFAULT 0,
    -- NULL: closed. Open until opened_at + open_seconds, then half-open.
    opened_at     timestamptz,
    -- Half-open: the probe's holder has it until then (a holder that died frees it).
    probe_until   timestamptz
);

-- One admission: the breaker's answer and, when it lets the call through, a token.
--   retry_in  0: the call may go (after `wait`); > 0: the breaker refuses it for that long
--   probe     this caller holds the half-open probe: report its result
--   wait      seconds to wait before calling; granted false: longer than max_wait, nothing
--             was taken
--   state     closed | open | half_open, as this admission saw it
CREATE FUNCTION provider_budget_admit(
    p_connection uuid, p_per_second double precision, p_burst double precision,
    p_max_wait double precision, p_successes integer, p_window integer,
    p_open_seconds double precision, p_probe_seconds double precision, p_want integer,
    OUT retry_in double precision, OUT probe boolean, OUT wait double precision,
    OUT granted boolean, OUT state text, OUT taken integer
) LANGUAGE plpgsql AS $$
DECLARE
    b provider_budgets;
    now_ timestamptz := clock_timestamp();
    tokens_ double precision;
BEGIN
    INSERT INTO provider_budgets (connection_id, tokens, refilled_at)
    VALUES (p_connection, p_burst, now_)
    ON CONFLICT (connection_id) DO NOTHING;
    SELECT * INTO b FROM provider_budgets WHERE connection_id = p_connection FOR UPDATE;
    tokens_ := least(p_burst, b.tokens + extract(epoch FROM now_ - b.refilled_at) * p_per_second);
    b.calls := b.calls + p_successes;
    IF b.calls > p_window THEN
        b.failures := b.failures * p_window / b.calls;
        b.calls := p_window;
    END IF;
    retry_in := 0; probe := false; wait := 0; granted := false; state := 'closed'; taken := 0;
    IF b.opened_at IS NOT NULL THEN
        retry_in := extract(epoch FROM b.opened_at - now_) + p_open_seconds;
        IF retry_in > 0 THEN
            state := 'open';
        ELSIF b.probe_until IS NULL OR b.probe_until < now_ THEN
            state := 'half_open'; retry_in := 0; probe := true;
        ELSE
            state := 'half_open'; retry_in := least(1.0, p_open_seconds);
        END IF;
    END IF;
    IF retry_in = 0 THEN
        wait := greatest(0, (1 - tokens_) / p_per_second);
        granted := wait <= p_max_wait;
        IF granted THEN
            -- A probe is one call; otherwise what is free now, up to p_want, at least one.
            taken := CASE WHEN probe OR tokens_ < 2 THEN 1
                          ELSE least(p_want, floor(tokens_)::integer) END;
            tokens_ := tokens_ - taken;
            IF probe THEN
                b.probe_until := now_ + make_interval(secs => p_probe_seconds + wait);
            END IF;
        ELSE
            probe := false;
        END IF;
    END IF;
    UPDATE provider_budgets
       SET tokens = tokens_, refilled_at = now_, calls = b.calls, failures = b.failures,
           probe_until = b.probe_until
     WHERE connection_id = p_connection;
END
$$;

-- A call's result that cannot wait for the next admission: a failure, or the probe's
-- result. Returns the breaker's state after it.
CREATE FUNCTION provider_budget_record(
    p_connection uuid, p_success boolean, p_probe boolean, p_successes integer,
    p_window integer, p_min_calls integer, p_failure_ratio double precision
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    b provider_budgets;
    now_ timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO b FROM provider_budgets WHERE connection_id = p_connection FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'closed';
    END IF;
    IF p_probe AND b.opened_at IS NOT NULL THEN
        IF p_success THEN
            UPDATE provider_budgets SET opened_at = NULL, probe_until = NULL, calls = 0,
                   failures = 0 WHERE connection_id = p_connection;
            RETURN 'closed';
        END IF;
        UPDATE provider_budgets SET opened_at = now_, probe_until = NULL, calls = 0,
               failures = 0 WHERE connection_id = p_connection;
        RETURN 'open';
    END IF;
    IF b.opened_at IS NOT NULL THEN
        RETURN 'open';  -- a call admitted before another process opened it
    END IF;
    b.calls := b.calls + p_successes + 1;
    b.failures := b.failures + CASE WHEN p_success THEN 0 ELSE 1 END;
    IF b.calls > p_window THEN
        b.failures := b.failures * p_window / b.calls;
        b.calls := p_window;
    END IF;
    IF b.calls >= p_min_calls AND b.failures / b.calls >= p_failure_ratio THEN
        UPDATE provider_budgets SET opened_at = now_, probe_until = NULL, calls = 0,
               failures = 0 WHERE connection_id = p_connection;
        RETURN 'open';
    END IF;
    UPDATE provider_budgets SET calls = b.calls, failures = b.failures
     WHERE connection_id = p_connection;
    RETURN 'closed';
END
$$;

-- The provider said 429 (Retry-After): nobody calls it for p_seconds.
CREATE FUNCTION provider_budget_penalise(
    p_connection uuid, p_per_second double precision, p_burst double precision,
    p_seconds double precision
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := clock_timestamp();
BEGIN
    INSERT INTO provider_budgets AS b (connection_id, tokens, refilled_at)
    VALUES (p_connection, 1 - p_seconds * p_per_second, now_)
    ON CONFLICT (connection_id) DO UPDATE
       SET tokens = least(
               least(p_burst, b.tokens + extract(epoch FROM now_ - b.refilled_at) * p_per_second),
               1 - p_seconds * p_per_second),
           refilled_at = now_;
END
$$;
